// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace nsidd {

/// Something kept per row of self's table, by nsid: a flat table sorted by nsid (no allocation
/// per row, 4 bytes of key; lookups by binary search; new ids, mostly the highest, append). An
/// entry taken back is blanked (T{}: `blank()` is then true) rather than moved out: an id
/// reused meanwhile takes its slot back in place, and the blanks are dropped together once they
/// are half the table. So a burst of deaths costs no move per row.
template <typename T> class ByNsid {
public:
    using Nsid = std::int32_t;
    using Item = std::pair<Nsid, T>;

    /// The entry of `nsid` (possibly blank), or nullptr.
    const T* find(Nsid nsid) const {
        const auto it = slot(items_, nsid);
        return it != items_.end() && it->first == nsid ? &it->second : nullptr;
    }
    /// The entry of `nsid`, made blank when there was none.
    T& operator[](Nsid nsid) {
        auto it = slot(items_, nsid);
        if (it == items_.end() || it->first != nsid)
            it = items_.emplace(it, nsid, T{});
        return it->second;
    }
    void erase(Nsid nsid) {
        const auto it = slot(items_, nsid);
        if (it == items_.end() || it->first != nsid || it->second.blank())
            return;
        it->second = T{};
        if (++blanks_ > 64 && blanks_ > items_.size() / 2) {
            std::erase_if(items_, [](const Item& i) { return i.second.blank(); });
            blanks_ = 0;
        }
    }
    /// Appends an entry above every other (building a table in row order).
    void push_back(Nsid nsid, T value) { items_.emplace_back(nsid, std::move(value)); }
    void reserve(std::size_t n) { items_.reserve(n); }
    /// Entries, blanks included.
    std::size_t size() const noexcept { return items_.size(); }
    auto begin() const noexcept { return items_.begin(); }
    auto end() const noexcept { return items_.end(); }

private:
    template <typename Items> static auto slot(Items& items, Nsid nsid) {
        return std::lower_bound(items.begin(), items.end(), nsid,
                                [](const Item& i, Nsid n) { return i.first < n; });
    }

    std::vector<Item> items_;
    std::size_t blanks_ = 0;
};

} // namespace nsidd
