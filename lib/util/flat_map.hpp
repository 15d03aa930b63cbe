// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace nsidd {

/// An ordered map kept as one array sorted by key, with the std::map calls nsidd uses. Made for
/// tables of many rows keyed by small ids (a peer-ID table): no allocation per entry and no
/// node header, so a row costs its own size. New keys mostly come in ascending order (the
/// kernel gives the lowest free id, and a table fills upwards), so inserting is mostly an
/// append. An erased entry is left in place, dead, and reset to V{} where V holds something to
/// free (a plain row is not written at all): a key reused soon after
/// (ids are reused at once) takes its slot back without moving anything, and a burst of erases
/// moves nothing. The dead are dropped together once they are more than half of all: by an
/// erase by key, or by compact() after a walk that erased through its iterator.
///
/// Iterators visit only live entries, in key order. Erasing through an iterator invalidates
/// nothing but the entry erased (so a walk may erase as it goes); erasing by key, emplace()
/// and compact() may move every entry (as a vector's insert does).
template <typename K, typename V> class FlatMap {
    using Items = std::vector<std::pair<K, V>>;

public:
    using value_type = std::pair<K, V>;

    template <bool Const> class Iterator {
        using Map = std::conditional_t<Const, const FlatMap, FlatMap>;

    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = FlatMap::value_type;
        using difference_type = std::ptrdiff_t;
        using reference = std::conditional_t<Const, const value_type&, value_type&>;
        using pointer = std::conditional_t<Const, const value_type*, value_type*>;

        Iterator() = default;
        Iterator(Map* map, std::size_t at) : map_(map), at_(at) {}
        operator Iterator<true>() const { return {map_, at_}; } // NOLINT: as std::map's
        reference operator*() const { return map_->items_[at_]; }
        pointer operator->() const { return &map_->items_[at_]; }
        Iterator& operator++() {
            at_ = map_->next_live(at_ + 1);
            return *this;
        }
        Iterator operator++(int) {
            auto was = *this;
            ++*this;
            return was;
        }
        bool operator==(const Iterator& o) const noexcept { return at_ == o.at_; }

    private:
        friend class FlatMap;
        Map* map_ = nullptr;
        std::size_t at_ = 0;
    };
    using iterator = Iterator<false>;
    using const_iterator = Iterator<true>;

    iterator begin() noexcept { return {this, next_live(0)}; }
    iterator end() noexcept { return {this, items_.size()}; }
    const_iterator begin() const noexcept { return {this, next_live(0)}; }
    const_iterator end() const noexcept { return {this, items_.size()}; }

    std::size_t size() const noexcept { return live_count_; }
    bool empty() const noexcept { return live_count_ == 0; }

    iterator find(const K& key) { return {this, find_at(key)}; }
    const_iterator find(const K& key) const { return {this, find_at(key)}; }
    std::size_t count(const K& key) const { return find_at(key) != items_.size() ? 1 : 0; }
    /// The value of `key`, or nullptr.
    V* get(const K& key) { return const_cast<V*>(std::as_const(*this).get(key)); }
    const V* get(const K& key) const {
        const auto i = find_at(key);
        return i == items_.size() ? nullptr : &items_[i].second;
    }
    /// The value of `key`, made V{} when there was none.
    V& operator[](const K& key) { return emplace(key, V{}).first->second; }
    V& at(const K& key) { return const_cast<V&>(std::as_const(*this).at(key)); }
    const V& at(const K& key) const {
        const auto i = find_at(key);
        if (i == items_.size())
            throw std::out_of_range("FlatMap::at");
        return items_[i].second;
    }

    /// Inserts (key, value) unless the key is there; {the entry, whether it was inserted}.
    std::pair<iterator, bool> emplace(const K& key, V value) {
        auto i = slot(key);
        if (i < items_.size() && items_[i].first == key) {
            if (live_[i])
                return {iterator{this, i}, false};
            items_[i].second = std::move(value); // a dead entry of the same key: revived
            live_[i] = 1;
            --dead_count_;
        } else {
            // A dead neighbour (its key just above or below) takes the key: nothing moves.
            const bool above = i < items_.size() && !live_[i];
            const bool below = !above && i > 0 && !live_[i - 1];
            if (above || below) {
                i -= below ? 1 : 0;
                items_[i] = {key, std::move(value)};
                live_[i] = 1;
                --dead_count_;
                ++live_count_;
                return {iterator{this, i}, true};
            }
            items_.emplace(items_.begin() + static_cast<std::ptrdiff_t>(i), key, std::move(value));
            live_.insert(live_.begin() + static_cast<std::ptrdiff_t>(i), 1);
        }
        ++live_count_;
        return {iterator{this, i}, true};
    }

    /// Erases the entry (left dead in place: see compact()); returns the next live one (which
    /// may take a walk over the dead: a walk that erases as it goes costs no more than one
    /// that does not, but a lone erase is cheaper by key).
    iterator erase(const_iterator it) {
        kill(it.at_);
        return {this, next_live(it.at_ + 1)};
    }
    /// Erases the entry of `key`, if any, and compacts when the dead are more than half of all
    /// (amortized O(log n): no walk to the next live entry).
    std::size_t erase(const K& key) {
        const auto i = find_at(key);
        if (i == items_.size())
            return 0;
        erase_one(const_iterator{this, i});
        return 1;
    }
    /// The same for an entry already found (amortized O(1)); invalidates every iterator.
    void erase_one(const_iterator it) {
        kill(it.at_);
        compact();
    }
    /// Removes every live entry for which `pred(entry)` holds, appending it to `removed`, and
    /// drops the dead entries with them: one pass, in place (and gives back the spare capacity
    /// once that is most of it, as compact() does). Where entries are plain data, without a
    /// branch per entry: a burst drops rows at random, which no branch predicts. Returns how
    /// many it removed. Invalidates every iterator.
    template <typename Pred> std::size_t remove_if(Pred pred, std::vector<value_type>& removed) {
        const std::size_t n = items_.size(), first = removed.size();
        std::size_t out = 0, gone = 0;
        if constexpr (std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>) {
            removed.resize(first + n);
            auto* to = removed.data() + first;
            for (std::size_t i = 0; i < n; ++i) {
                const bool live = live_[i] != 0;
                // (Evaluated for the dead too: they hold what they held, as plain data.)
                const bool drop = live & static_cast<bool>(pred(std::as_const(items_[i])));
                to[gone] = items_[i];
                gone += drop ? 1 : 0;
                items_[out] = items_[i];
                out += live && !drop ? 1 : 0;
            }
            removed.resize(first + gone);
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                if (!live_[i])
                    continue;
                if (pred(std::as_const(items_[i]))) {
                    removed.push_back(std::move(items_[i]));
                    ++gone;
                } else {
                    if (out != i)
                        items_[out] = std::move(items_[i]);
                    ++out;
                }
            }
        }
        items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(out), items_.end());
        live_.assign(out, 1);
        live_count_ = out;
        dead_count_ = 0;
        give_back_spare();
        return gone;
    }
    void reserve(std::size_t n) {
        items_.reserve(n);
        live_.reserve(n);
    }
    void clear() noexcept {
        items_ = {};
        live_ = {};
        live_count_ = dead_count_ = 0;
    }

    /// Drops the dead entries once they are more than half of all (and gives back the spare
    /// capacity once that is most of it). Amortized O(1) per erase.
    void compact() {
        if (dead_count_ <= 64 || dead_count_ <= items_.size() / 2)
            return;
        std::size_t out = 0;
        for (std::size_t i = 0; i < items_.size(); ++i)
            if (live_[i]) {
                if (out != i)
                    items_[out] = std::move(items_[i]);
                ++out;
            }
        items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(out), items_.end());
        live_.assign(out, 1);
        dead_count_ = 0;
        give_back_spare();
    }
    /// Entries held, the dead included (for tests).
    std::size_t slots() const noexcept { return items_.size(); }

private:
    std::size_t slot(const K& key) const {
        // Most lookups are for the newest ids: try the end first.
        if (items_.empty() || items_.back().first < key)
            return items_.size();
        // A table filled from 0 up, as the kernel gives ids, holds id k at k (the dead stay in
        // place): try there next.
        if constexpr (std::is_integral_v<K>) {
            const auto at = static_cast<std::make_unsigned_t<K>>(key); // (a negative one: past)
            if (at < items_.size() && items_[at].first == key)
                return at;
        }
        return static_cast<std::size_t>(
            std::lower_bound(items_.begin(), items_.end(), key,
                             [](const value_type& v, const K& k) { return v.first < k; }) -
            items_.begin());
    }
    std::size_t find_at(const K& key) const {
        const auto i = slot(key);
        return i < items_.size() && items_[i].first == key && live_[i] ? i : items_.size();
    }
    // Frees the spare capacity once that is most of it.
    void give_back_spare() {
        if (items_.capacity() > 2 * items_.size() + 64) {
            items_.shrink_to_fit();
            live_.shrink_to_fit();
        }
    }
    void kill(std::size_t i) {
        if constexpr (!std::is_trivially_destructible_v<V>)
            items_[i].second = V{}; // what it holds is freed now (a plain row holds nothing)
        live_[i] = 0;
        --live_count_;
        ++dead_count_;
    }
    std::size_t next_live(std::size_t i) const noexcept {
        while (i < items_.size() && !live_[i])
            ++i;
        return i;
    }

    Items items_;
    // Whether each entry is live: a byte each, not std::vector<bool>, whose insert in the
    // middle shifts bit by bit (an id given out of order, e.g. at a restart, moves memory).
    std::vector<std::uint8_t> live_;
    std::size_t live_count_ = 0;
    std::size_t dead_count_ = 0;
};

/// Something kept per row of self's table, by nsid (the engine's notes, the catalog's index).
template <typename V> using ByNsid = FlatMap<std::int32_t, V>;

} // namespace nsidd
