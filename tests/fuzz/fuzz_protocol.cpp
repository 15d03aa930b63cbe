// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer target: a Varlink byte stream from a client (and replies on the client side).
// Framing, call parsing and reply parsing must answer or reject, never crash or grow unbounded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "varlink/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace nsidd::varlink;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    Framer framer(4096);
    // Feed in two pieces, as a socket might deliver it.
    const std::size_t half = size / 2;
    framer.append(std::span<const char>(input.data(), half));
    for (int piece = 0; piece < 2; ++piece) {
        for (;;) {
            auto m = framer.next();
            if (!m || !*m)
                break;
            auto call = parse_call(**m);
            if (!call) {
                // The error reply must encode, whatever bytes the parameter echoes.
                (void)encode_error(call.error().error, call.error().parameters);
            }
            (void)parse_reply(**m);
        }
        if (piece == 0)
            framer.append(std::span<const char>(input.data() + half, size - half));
    }
    return 0;
}
