// SPDX-License-Identifier: LGPL-2.1-or-later
#include "util/result.hpp"

namespace nsidd {
namespace {

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "nsidd"; }
    std::string message(int value) const override {
        switch (static_cast<Errc>(value)) {
        case Errc::Malformed:
            return "malformed input";
        case Errc::Truncated:
            return "truncated input";
        case Errc::TooLarge:
            return "input too large";
        case Errc::Timeout:
            return "timed out";
        case Errc::Closed:
            return "connection closed";
        case Errc::Protocol:
            return "protocol violation";
        case Errc::Unavailable:
            return "unavailable";
        case Errc::Rejected:
            return "request rejected";
        }
        return "unknown error";
    }
};

} // namespace

const std::error_category& nsidd_category() noexcept {
    static const Category category;
    return category;
}

} // namespace nsidd
