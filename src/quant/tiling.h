// Splitting a (rows x tokens) product into register tiles, shared by the kernels of every
// instruction set. A tile kernel Tile<R, T>::run computes R weight rows against T tokens; it is
// instantiated for every R <= RMax, T <= TMax so edges need no scalar code.
//
// Loop order: each group of R rows (a few KB, stays in L1) meets every token tile before the next
// rows are read, so weights stream from memory once per call while the activations (reused by every
// row group) stay in L2.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace ferrum::quant {

struct TileArgs {
  const uint8_t* w;  // first row of the tile
  size_t w_row_bytes;
  const uint8_t* act;  // first token of the tile
  size_t act_row_bytes;
  int64_t k;
  float* y;  // y[t * ldy + r] for the tile's r, t
  int64_t ldy;
};

using TileFn = void (*)(const TileArgs&);

template <template <int, int> class Tile, int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> tile_row(std::integer_sequence<int, Ts...>) {
  return {&Tile<R, Ts + 1>::run...};
}

template <template <int, int> class Tile, int TMax, int... Rs>
constexpr auto tile_table(std::integer_sequence<int, Rs...>) {
  return std::array<std::array<TileFn, TMax>, sizeof...(Rs)>{
      tile_row<Tile, Rs + 1>(std::make_integer_sequence<int, TMax>())...};
}

// Tiles of RDecode x 1 for a single token (bandwidth bound: several rows in flight), RMax x TMax
// otherwise (compute bound: each decoded weight block serves TMax tokens).
template <template <int, int> class Tile, int RDecode, int RMax, int TMax>
void run_tiles(const uint8_t* w, size_t w_row_bytes, const void* act, size_t act_row_bytes, int64_t k,
               int64_t n_tokens, float* y, int64_t ldy, int64_t n_rows) {
  static constexpr auto table =
      tile_table<Tile, TMax>(std::make_integer_sequence<int, std::max(RDecode, RMax)>());
  const int64_t rstep = n_tokens == 1 ? RDecode : RMax;
  const auto* a = static_cast<const uint8_t*>(act);
  // Long prefills: token blocks whose activations fit in half of a 1 MB L2, each meeting all rows.
  const int64_t block = std::max<int64_t>(
      TMax, static_cast<int64_t>((size_t{512} << 10) / std::max<size_t>(act_row_bytes, 1)) / TMax * TMax);
  for (int64_t b0 = 0; b0 < n_tokens; b0 += block) {
    const int64_t b1 = std::min(n_tokens, b0 + block);
    for (int64_t r0 = 0; r0 < n_rows; r0 += rstep) {
      const int64_t nr = std::min(rstep, n_rows - r0);
      for (int64_t t0 = b0; t0 < b1; t0 += TMax) {
        const int64_t nt = std::min<int64_t>(TMax, b1 - t0);
        const TileArgs args{w + r0 * w_row_bytes, w_row_bytes, a + t0 * act_row_bytes, act_row_bytes, k,
                            y + t0 * ldy + r0,    ldy};
        table[nr - 1][nt - 1](args);
      }
    }
  }
}

}  // namespace ferrum::quant
