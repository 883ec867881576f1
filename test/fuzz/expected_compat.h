#pragma once
// Only for fuzz builds with a clang whose concepts support is too old for
// libstdc++'s <expected> (clang 14: __cpp_concepts < 202002L, so <expected>
// declares nothing). Force-included by test/fuzz/CMakeLists.txt when needed;
// a newer clang (16+) gets the real std::expected and this header does
// nothing. Covers only what kipvs's code uses.

#include <version>

#if !defined(__cpp_lib_expected)
#include <expected>
#include <type_traits>
#include <utility>
#include <variant>

namespace std {

template <typename E>
class unexpected {
 public:
  constexpr explicit unexpected(E e) : error_(std::move(e)) {}
  constexpr const E& error() const& { return error_; }
  constexpr E& error() & { return error_; }
  constexpr E&& error() && { return std::move(error_); }

 private:
  E error_;
};
template <typename E>
unexpected(E) -> unexpected<E>;

template <typename T, typename E>
class expected {
 public:
  using value_type = T;
  using error_type = E;
  constexpr expected() requires std::is_default_constructible_v<T> : v_(std::in_place_index<0>) {}
  template <typename U = T>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, expected> &&
           !std::is_same_v<std::remove_cvref_t<U>, unexpected<E>>) constexpr expected(U&& u)
      : v_(std::in_place_index<0>, std::forward<U>(u)) {}
  template <typename G>
  constexpr expected(const unexpected<G>& u) : v_(std::in_place_index<1>, u.error()) {}
  template <typename G>
  constexpr expected(unexpected<G>&& u) : v_(std::in_place_index<1>, std::move(u).error()) {}

  constexpr bool has_value() const { return v_.index() == 0; }
  constexpr explicit operator bool() const { return has_value(); }
  constexpr T& value() & { return std::get<0>(v_); }
  constexpr const T& value() const& { return std::get<0>(v_); }
  constexpr T& operator*() & { return std::get<0>(v_); }
  constexpr const T& operator*() const& { return std::get<0>(v_); }
  constexpr T&& operator*() && { return std::get<0>(std::move(v_)); }
  constexpr T* operator->() { return &std::get<0>(v_); }
  constexpr const T* operator->() const { return &std::get<0>(v_); }
  constexpr E& error() & { return std::get<1>(v_); }
  constexpr const E& error() const& { return std::get<1>(v_); }
  constexpr E&& error() && { return std::get<1>(std::move(v_)); }
  template <typename U>
  constexpr T value_or(U&& u) const& {
    return has_value() ? **this : static_cast<T>(std::forward<U>(u));
  }

 private:
  std::variant<T, E> v_;
};

template <typename E>
class expected<void, E> {
 public:
  using value_type = void;
  using error_type = E;
  constexpr expected() = default;
  template <typename G>
  constexpr expected(const unexpected<G>& u) : error_(u.error()), ok_(false) {}
  template <typename G>
  constexpr expected(unexpected<G>&& u) : error_(std::move(u).error()), ok_(false) {}
  constexpr bool has_value() const { return ok_; }
  constexpr explicit operator bool() const { return ok_; }
  constexpr void value() const {}
  constexpr void operator*() const {}
  constexpr E& error() & { return error_; }
  constexpr const E& error() const& { return error_; }

 private:
  E error_{};
  bool ok_ = true;
};

}  // namespace std
#endif
