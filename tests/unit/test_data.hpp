// SPDX-License-Identifier: LGPL-2.1-or-later
// Captured kernel messages from tests/data (hex, one datagram per file), for tests and benchmarks.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>
#include <vector>

namespace nsidd::testing {

/// The bytes of tests/data/NAME.hex; empty if the file is missing.
inline std::vector<std::byte> load_hex(const std::string& name) {
    std::ifstream in(std::string(NSIDD_TEST_DATA) + "/" + name + ".hex");
    std::string hex;
    in >> hex;
    std::vector<std::byte> out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<std::byte>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

} // namespace nsidd::testing
