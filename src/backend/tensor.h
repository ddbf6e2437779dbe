// A tensor is a view: element type, up to three dimensions and byte strides over memory that
// someone else owns (the model's mapping or device upload, the KV manager, the scratch arena).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace ferrum {

struct Tensor {
  DType type = DType::F32;
  int64_t ne[3] = {1, 1, 1};  // ne[0]: row length (contiguous); ne[1]: rows; ne[2]: matrices (experts)
  size_t nb[3] = {0, 0, 0};   // byte strides of one element/block, one row, one matrix
  void* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne[1]; }
  size_t row_stride() const { return nb[1]; }
  template <class T>
  T* row(int64_t r) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(data) + static_cast<size_t>(r) * nb[1]);
  }
  // Matrix e of a 3-D stack (an expert), as a 2-D view.
  Tensor matrix(int64_t e) const {
    Tensor t = *this;
    t.ne[2] = 1;
    t.data = static_cast<uint8_t*>(data) + static_cast<size_t>(e) * nb[2];
    return t;
  }
  // Rows [r0, r0 + n) as a view.
  Tensor row_slice(int64_t r0, int64_t n) const {
    Tensor t = *this;
    t.ne[1] = n;
    t.data = static_cast<uint8_t*>(data) + static_cast<size_t>(r0) * nb[1];
    return t;
  }

  // A dense row-major view of rows x cols elements of `type` (cols a multiple of its block size).
  static Tensor matrix_view(DType type, void* data, int64_t rows, int64_t cols, int64_t mats = 1) {
    Tensor t;
    t.type = type;
    t.ne[0] = cols;
    t.ne[1] = rows;
    t.ne[2] = mats;
    t.nb[0] = static_cast<size_t>(traits(type).block_bytes);
    t.nb[1] = row_bytes(type, cols);
    t.nb[2] = t.nb[1] * static_cast<size_t>(rows);
    t.data = data;
    return t;
  }
  static Tensor f32(float* data, int64_t rows, int64_t cols) { return matrix_view(DType::F32, data, rows, cols); }
};

}  // namespace ferrum
