// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace nsidd {

/// An immutable value shared by every copy (a pointer copy, not a deep one), compared by value.
/// For the parts of an identity that the catalog and every registry row, change record and
/// history entry would otherwise each hold a copy of. Empty reads as a default T.
///
/// One pointer wide, the count beside the value in one block: a row holds several of these, so
/// std::shared_ptr's second pointer and separate weak count would cost every row and namespace
/// ~8 bytes per field (bench/README.md, "Memory"). The count is not atomic: nsidd shares these
/// only on its one event-loop thread.
template <typename T> class Shared {
public:
    Shared() = default;
    explicit Shared(T value) : block_(new Block{1, std::move(value)}) {}
    Shared(const Shared& other) noexcept : block_(other.block_) {
        if (block_ != nullptr)
            ++block_->refs;
    }
    Shared(Shared&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    Shared& operator=(Shared other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~Shared() {
        if (block_ != nullptr && --block_->refs == 0)
            destroy(block_);
    }

    const T& operator*() const noexcept { return block_ ? block_->value : empty(); }
    const T* operator->() const noexcept { return &**this; }
    /// Whether a value was set (an empty Shared is "unknown").
    explicit operator bool() const noexcept { return block_ != nullptr; }
    bool operator==(const Shared& other) const {
        return block_ == other.block_ || (bool(*this) == bool(other) && **this == *other);
    }

private:
    struct Block {
        std::size_t refs;
        const T value;
    };
    // Out of line: where GCC sees the delete inlined next to another copy's decrement it
    // cannot tell the counts apart and warns of a use after free that cannot happen.
    [[gnu::noinline]] static void destroy(Block* block) noexcept { delete block; }
    static const T& empty() noexcept {
        static const T value{};
        return value;
    }
    Block* block_ = nullptr;
};

/// Whose a namespace is, read from the cgroup of a process inside it (or of one holding it).
/// Parts the path does not say are empty.
struct Owner {
    std::string unit;      ///< the innermost systemd unit (.service or .scope)
    std::string runtime;   ///< docker, containerd, cri-o, podman, systemd-nspawn
    std::string container; ///< the runtime's container id (or the machine's name)
    std::string pod_uid;   ///< the Kubernetes pod, from a kubepods cgroup
    bool operator==(const Owner&) const = default;
};

} // namespace nsidd
