// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace nsidd {

/// A counted reference to a block that holds its own count (`refs`, set to 1 by its maker) and
/// is freed by `Block::release(Block*)` when the last reference goes. One pointer wide: the
/// handle of Shared and Strings, which a row and a namespace hold several of. The count is not
/// atomic: nsidd shares these only on its one event-loop thread.
template <typename Block> class Counted {
public:
    Counted() = default;
    /// Takes over a new block (its count already 1), or nullptr.
    explicit Counted(Block* block) noexcept : block_(block) {}
    Counted(const Counted& other) noexcept : block_(other.block_) {
        if (block_ != nullptr)
            ++block_->refs;
    }
    Counted(Counted&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    Counted& operator=(Counted other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~Counted() {
        if (block_ != nullptr && --block_->refs == 0)
            release(block_);
    }
    const Block* get() const noexcept { return block_; }

private:
    // Out of line: where GCC sees the free inlined next to another copy's decrement it cannot
    // tell the counts apart and warns of a use after free that cannot happen.
    [[gnu::noinline]] static void release(Block* block) noexcept { Block::release(block); }
    Block* block_ = nullptr;
};

/// An immutable value shared by every copy (a pointer copy, not a deep one), compared by value.
/// For the parts of an identity that the catalog and every registry row, change record and
/// history entry would otherwise each hold a copy of. Empty reads as a default T.
///
/// One pointer wide, the count beside the value in one block: std::shared_ptr's second pointer
/// and separate weak count would cost every row and namespace ~8 bytes per field
/// (bench/README.md, "Memory").
template <typename T> class Shared {
public:
    Shared() = default;
    explicit Shared(T value) : ref_(new Block{1, std::move(value)}) {}

    const T& operator*() const noexcept { return ref_.get() ? ref_.get()->value : empty(); }
    const T* operator->() const noexcept { return &**this; }
    /// Whether a value was set (an empty Shared is "unknown").
    explicit operator bool() const noexcept { return ref_.get() != nullptr; }
    bool operator==(const Shared& other) const {
        return ref_.get() == other.ref_.get() || (bool(*this) == bool(other) && **this == *other);
    }

private:
    struct Block {
        std::size_t refs;
        const T value;
        static void release(Block* block) noexcept { delete block; }
    };
    static const T& empty() noexcept {
        static const T value{};
        return value;
    }
    Counted<Block> ref_;
};

} // namespace nsidd
