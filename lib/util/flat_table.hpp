// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace nsidd {

/// A map from small keys to small values kept as one array sorted by key: no allocation per
/// entry; lookups by binary search; new keys, mostly the highest (new nsids, new mount ids),
/// append. An entry taken back is blanked (T{}: `blank()` is then true) rather than moved out:
/// a key reused meanwhile takes its slot back in place, and the blanks are dropped together
/// once they are half the table. So a burst of deaths or unmounts moves nothing per entry.
template <typename Key, typename T> class FlatTable {
public:
    using Item = std::pair<Key, T>;

    /// The entry of `key` (possibly blank), or nullptr.
    const T* find(Key key) const {
        const auto it = slot(items_, key);
        return it != items_.end() && it->first == key ? &it->second : nullptr;
    }
    /// The entry of `key`, made blank when there was none.
    T& operator[](Key key) {
        auto it = slot(items_, key);
        if (it == items_.end() || it->first != key)
            it = items_.emplace(it, key, T{});
        return it->second;
    }
    void erase(Key key) {
        const auto it = slot(items_, key);
        if (it == items_.end() || it->first != key || it->second.blank())
            return;
        it->second = T{};
        if (++blanks_ > 64 && blanks_ > items_.size() / 2) {
            std::erase_if(items_, [](const Item& i) { return i.second.blank(); });
            blanks_ = 0;
        }
    }
    /// Appends an entry above every other (building a table in row order).
    void push_back(Key key, T value) { items_.emplace_back(key, std::move(value)); }
    void reserve(std::size_t n) { items_.reserve(n); }
    void clear() noexcept {
        items_ = {};
        blanks_ = 0;
    }
    /// Entries, blanks included.
    std::size_t size() const noexcept { return items_.size(); }
    auto begin() const noexcept { return items_.begin(); }
    auto end() const noexcept { return items_.end(); }

private:
    template <typename Items> static auto slot(Items& items, Key key) {
        return std::lower_bound(items.begin(), items.end(), key,
                                [](const Item& i, Key n) { return i.first < n; });
    }

    std::vector<Item> items_;
    std::size_t blanks_ = 0;
};

/// Something kept per row of self's table, by nsid.
template <typename T> using ByNsid = FlatTable<std::int32_t, T>;

} // namespace nsidd
