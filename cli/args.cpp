// SPDX-License-Identifier: LGPL-2.1-or-later
#include "cli/args.hpp"

namespace nsidctl {

Args::Args(int argc, char** argv) : words_(argv, argv + argc) {
    for (auto& w : words_)
        if (w.rfind("-j=", 0) == 0)
            w = "--json=" + w.substr(3);
    for (auto& w : words_)
        pointers_.push_back(w.data());
    pointers_.push_back(nullptr);
}

std::string command_word(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const std::string prev = argv[i - 1];
        if (a.rfind('-', 0) == 0 || prev == "--socket" ||
            ((prev == "-j" || prev == "--json") && (a == "short" || a == "pretty")))
            continue;
        return a;
    }
    return {};
}

} // namespace nsidctl
