// SPDX-License-Identifier: LGPL-2.1-or-later
// What an apply() or resync() changed (registry.hpp): the list, and the dead observers' tables
// that left whole, given row by row where each left.
#include "registry/registry.hpp"

namespace nsidd::registry {

void Changes::vanish(Observer observer, FlatMap<Nsid, Registry::Row>&& rows) {
    vanished_rows_ += rows.size();
    vanished_.push_back({observer, std::move(rows), list_.size()});
}

void Changes::append(Changes&& more) {
    if (list_.empty() && vanished_.empty()) {
        *this = std::move(more); // (no copy of what the first one changed)
        return;
    }
    for (auto& v : more.vanished_) {
        v.before += list_.size();
        vanished_.push_back(std::move(v));
    }
    vanished_rows_ += more.vanished_rows_;
    list_.insert(list_.end(), more.list_.begin(), more.list_.end());
}

Changes::Iterator::Iterator(const Changes* of, std::size_t at, std::size_t table)
    : of_(of), at_(at), table_(table) {
    if (table_ < of_->vanished_.size())
        row_ = of_->vanished_[table_].rows.begin();
    settle();
}

bool Changes::Iterator::in_table() const noexcept {
    return table_ < of_->vanished_.size() && of_->vanished_[table_].before == at_;
}

void Changes::Iterator::settle() noexcept {
    while (in_table() && row_ == of_->vanished_[table_].rows.end())
        if (++table_ < of_->vanished_.size())
            row_ = of_->vanished_[table_].rows.begin();
}

Change Changes::Iterator::operator*() const {
    if (in_table())
        return {ChangeKind::Purge, of_->vanished_[table_].observer, row_->second.entry};
    return of_->list_[at_];
}

Changes::Iterator& Changes::Iterator::operator++() {
    if (in_table())
        ++row_;
    else
        ++at_;
    settle();
    return *this;
}

bool Changes::Iterator::operator==(const Iterator& o) const noexcept {
    return at_ == o.at_ && table_ == o.table_ &&
           (table_ == of_->vanished_.size() || row_ == o.row_);
}

} // namespace nsidd::registry
