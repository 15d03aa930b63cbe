// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "util/shared.hpp"

namespace nsidd {

/// An immutable list of strings shared by every copy, for the names and mount points of an
/// identity, which the catalog and every registry row, change record and history entry hold.
/// One reference-counted block holds the strings back to back, each ending in a NUL (no name or
/// path has one): a one-name list is one 32-byte allocation instead of a vector's two of 48
/// and the string's own when it is longer than 15 bytes (bench/README.md, "Memory"). An empty
/// list holds nothing.
class Strings {
public:
    /// Iterates the strings in order, as views into the block (valid while a copy lives).
    class Iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = std::string_view;
        using difference_type = std::ptrdiff_t;
        using pointer = const std::string_view*;
        using reference = std::string_view;

        Iterator() = default;
        std::string_view operator*() const noexcept { return {at_, len_}; }
        Iterator& operator++() noexcept {
            at_ += len_ + 1;
            len_ = at_ == end_ ? 0 : std::strlen(at_);
            return *this;
        }
        Iterator operator++(int) noexcept {
            auto was = *this;
            ++*this;
            return was;
        }
        bool operator==(const Iterator& other) const noexcept { return at_ == other.at_; }

    private:
        friend class Strings;
        Iterator(const char* at, const char* end) noexcept
            : at_(at), end_(end), len_(at == end ? 0 : std::strlen(at)) {}
        const char* at_ = nullptr;
        const char* end_ = nullptr;
        std::size_t len_ = 0;
    };
    using value_type = std::string_view;
    using const_iterator = Iterator;

    Strings() = default;
    Strings(std::initializer_list<std::string_view> strings);
    explicit Strings(const std::vector<std::string>& strings);

    bool empty() const noexcept { return ref_.get() == nullptr; }
    std::size_t size() const noexcept { return empty() ? 0 : ref_.get()->count; }
    Iterator begin() const noexcept { return {data(), data() + bytes()}; }
    Iterator end() const noexcept { return {data() + bytes(), data() + bytes()}; }
    /// The first string ("" when empty).
    std::string_view front() const noexcept {
        if (empty())
            return {};
        // A one-string list (a mount point's path, a namespace's one name) knows its length.
        const Block* b = ref_.get();
        return b->count == 1 ? std::string_view(data(), b->bytes - 1) : std::string_view(data());
    }
    bool contains(std::string_view s) const noexcept;

    /// The sorted list with `s` added (itself when it is there already).
    Strings with(std::string_view s) const;
    /// The list without `s` (itself when it is not there).
    Strings without(std::string_view s) const;
    /// The sorted union of two sorted lists.
    static Strings merge(const Strings& a, const Strings& b);

    bool operator==(const Strings& other) const noexcept;

private:
    struct Block {
        std::uint32_t refs;
        std::uint32_t count;
        std::uint32_t bytes; // of the strings and their NULs, after the block
        static void release(Block* block) noexcept;
    };
    template <typename Range> static Strings build(const Range& strings);
    const char* data() const noexcept {
        return empty() ? nullptr : reinterpret_cast<const char*>(ref_.get() + 1);
    }
    std::size_t bytes() const noexcept { return empty() ? 0 : ref_.get()->bytes; }

    Counted<Block> ref_;
};

} // namespace nsidd
