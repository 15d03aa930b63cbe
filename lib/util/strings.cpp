// SPDX-License-Identifier: LGPL-2.1-or-later
#include "util/strings.hpp"

#include <algorithm>
#include <new>

namespace nsidd {

template <typename Range> Strings Strings::build(const Range& strings) {
    std::size_t count = 0, bytes = 0;
    for (std::string_view s : strings) {
        ++count;
        bytes += s.size() + 1;
    }
    if (count == 0)
        return {};
    auto* block = static_cast<Block*>(::operator new(sizeof(Block) + bytes));
    new (block) Block{1, static_cast<std::uint32_t>(count), static_cast<std::uint32_t>(bytes)};
    char* at = reinterpret_cast<char*>(block + 1);
    for (std::string_view s : strings) {
        std::memcpy(at, s.data(), s.size());
        at[s.size()] = '\0';
        at += s.size() + 1;
    }
    Strings out;
    out.ref_ = Counted<Block>(block);
    return out;
}

Strings::Strings(std::initializer_list<std::string_view> strings) : Strings(build(strings)) {}
Strings::Strings(const std::vector<std::string>& strings) : Strings(build(strings)) {}

void Strings::Block::release(Block* block) noexcept {
    ::operator delete(block);
}

bool Strings::contains(std::string_view s) const noexcept {
    return std::find(begin(), end(), s) != end();
}

Strings Strings::with(std::string_view s) const {
    std::vector<std::string_view> out(begin(), end());
    const auto at = std::lower_bound(out.begin(), out.end(), s);
    if (at != out.end() && *at == s)
        return *this;
    out.insert(at, s);
    return build(out);
}

Strings Strings::without(std::string_view s) const {
    std::vector<std::string_view> out(begin(), end());
    const auto at = std::find(out.begin(), out.end(), s);
    if (at == out.end())
        return *this;
    out.erase(at);
    return build(out);
}

Strings Strings::merge(const Strings& a, const Strings& b) {
    if (b.empty())
        return a;
    if (a.empty())
        return b;
    std::vector<std::string_view> out;
    out.reserve(a.size() + b.size());
    std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
    return build(out);
}

bool Strings::operator==(const Strings& other) const noexcept {
    return ref_.get() == other.ref_.get() ||
           (bytes() == other.bytes() && std::memcmp(data(), other.data(), bytes()) == 0);
}

} // namespace nsidd
