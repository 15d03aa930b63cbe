// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer target: netlink datagrams as the kernel (or anyone who can send to the socket)
// delivers them. Any input must yield messages or an error, never a crash or an overread.
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

#include "netlink/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto r = nsidd::netlink::parse_datagram(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
    if (r) {
        // Touch every decoded field so that a bad read would show.
        std::size_t sum = 0;
        for (const auto& m : *r)
            if (const auto* n = std::get_if<nsidd::netlink::NsidMessage>(&m))
                sum += static_cast<std::size_t>(n->nsid) + n->current_nsid.value_or(0);
            else if (const auto* s = std::get_if<nsidd::netlink::Status>(&m))
                sum += s->extack.size() + static_cast<std::size_t>(s->error);
        (void)sum;
    }
    return 0;
}
