// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <utility>

#include <unistd.h>

namespace nsidd {

/// Owns one file descriptor and closes it on destruction; move-only.
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    bool is_valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_valid(); }

    /// Gives up ownership and returns the descriptor (-1 if none).
    int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the owned descriptor, if any, and takes `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

/// A deleter that calls a C free function, for unique_ptr over C handles.
template <auto fn> struct FnDeleter {
    template <typename T> void operator()(T* p) const noexcept { fn(p); }
};

} // namespace nsidd
