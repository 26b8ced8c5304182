// Shared by the batched crypto modules (esp.cc, wireguard.cc): reading typed arrays handed over from JS and the
// one call shape every batch takes,
//   (data: Uint8Array, offset: Uint32Array, length: Uint32Array, slot: Uint32Array, n, status: Uint8Array),
// where entry k is data[offset[k], offset[k] + length[k]) processed with the keys in slot[k], its result written
// to status[k]. The per-entry bounds check and the loop live here too, so each module supplies only the crypto.
#pragma once

#include <napi.h>

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

namespace tether_batch {

// Per-entry results common to every module (mirrored in src/common/crypto-entries.ts, CryptoStatus).
enum Status : uint8_t {
  kOk = 0,
  kAuthFailed = 1,   // the tag / ICV does not verify (open only)
  kBadLength = 2,    // too short for the format, or not a whole number of blocks
  kNoKey = 3,        // nothing installed in that slot (for that direction)
  kOutOfBounds = 4,  // offset/length outside the data buffer
  kCryptoError = 5,  // OpenSSL reported an error
};

template <typename T>
T* TypedData(const Napi::Value& v, napi_typedarray_type want, size_t* length, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  auto a = v.As<Napi::TypedArray>();
  if (a.TypedArrayType() != want) throw Napi::TypeError::New(v.Env(), std::string(what) + " has the wrong element type");
  *length = a.ElementLength();
  auto* base = static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  return reinterpret_cast<T*>(base);
}

// The slot count a batch class is constructed with: 1..2^20 (a million sessions is beyond any edge's table).
inline size_t SlotCount(const Napi::CallbackInfo& info, const char* what) {
  constexpr double kMaxSlots = 1 << 20;
  const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 1 && n <= kMaxSlots)) throw Napi::RangeError::New(info.Env(), std::string(what) + ": slots must be in 1..2^20");
  return static_cast<size_t>(n);
}

// Removes what a slot holds (remove(slot) from JS; a slot out of range holds nothing).
template <typename T>
Napi::Value RemoveSlot(std::vector<std::unique_ptr<T>>& slots, const Napi::CallbackInfo& info) {
  const uint32_t slot = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : UINT32_MAX;
  if (slot < slots.size()) slots[slot].reset();
  return info.Env().Undefined();
}

// How many slots hold keys (installed() from JS).
template <typename T>
Napi::Value CountInstalled(const std::vector<std::unique_ptr<T>>& slots, const Napi::CallbackInfo& info) {
  size_t n = 0;
  for (const auto& s : slots) n += s ? 1 : 0;
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// Runs `one(slot, bytes, length) -> Status` over every entry of the call; returns how many succeeded. Entries
// outside the data buffer are refused here (kOutOfBounds), before the module sees them.
template <typename One>
Napi::Value RunBatch(const Napi::CallbackInfo& info, One&& one) {
  Napi::Env env = info.Env();
  size_t data_len = 0, off_len = 0, len_len = 0, slot_len = 0, status_len = 0;
  uint8_t* data = TypedData<uint8_t>(info[0], napi_uint8_array, &data_len, "data");
  const uint32_t* offset = TypedData<uint32_t>(info[1], napi_uint32_array, &off_len, "offset");
  const uint32_t* length = TypedData<uint32_t>(info[2], napi_uint32_array, &len_len, "length");
  const uint32_t* slot = TypedData<uint32_t>(info[3], napi_uint32_array, &slot_len, "slot");
  if (!info[4].IsNumber()) throw Napi::TypeError::New(env, "n must be a number");
  const double nd = info[4].As<Napi::Number>().DoubleValue();
  uint8_t* status = TypedData<uint8_t>(info[5], napi_uint8_array, &status_len, "status");
  if (!(nd >= 0) || nd > off_len || nd > len_len || nd > slot_len || nd > status_len) throw Napi::RangeError::New(env, "n exceeds an entry array");
  const size_t n = static_cast<size_t>(nd);
  uint32_t ok = 0;
  for (size_t k = 0; k < n; k++) {
    const size_t off = offset[k], len = length[k];
    const Status st = off > data_len || len > data_len - off ? kOutOfBounds : one(slot[k], data + off, len);
    status[k] = st;
    if (st == kOk) ok++;
  }
  return Napi::Number::New(env, ok);
}

}  // namespace tether_batch
