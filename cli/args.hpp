// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>
#include <vector>

namespace nsidctl {

/// The command line as CLI11 is given it: "-j=VALUE" spelled "--json=VALUE" (CLI11 takes "="
/// after long options only).
class Args {
public:
    Args(int argc, char** argv);
    char** argv() noexcept { return pointers_.data(); }

private:
    std::vector<std::string> words_;
    std::vector<char*> pointers_;
};

/// The first word that is not an option or an option's value: the command.
std::string command_word(int argc, char** argv);

} // namespace nsidctl
