// tether native WireGuard transport crypto: whole batches of transport-data messages sealed or opened in place,
// one JS<->C call per batch (the TypeScript face is src/io/wg-crypto.ts; the call shape is batch.h's).
//
//   entry = one transport-data message (whitepaper §5.4.6), laid out by the device (src/onramp/wireguard):
//     type 4 ‖ reserved (4) ‖ receiver index (4) ‖ counter (8, little-endian) ‖ packet padded to 16 ‖ tag (16)
//   seal: reads the counter from the header, encrypts the padded packet in place, writes the tag.
//   open: reads the counter from the header, decrypts in place and verifies the tag (status kAuthFailed if not).
//
// AEAD: ChaCha20-Poly1305 of RFC 8439 §2.8 with the 96-bit nonce 32 zero bits ‖ the 64-bit counter,
// little-endian (whitepaper §5.4.6 "AEAD(key, counter, plaintext, ε)"): exactly 4 zero bytes followed by the
// header's counter bytes. No additional data for transport messages (the ε).
//
// Keys: one slot per session (the device's index-table slot), holding the sending and the receiving
// EVP_CIPHER_CTX, keyed at install and kept; per packet only re-initialised with the nonce: no allocation.
// remove() frees both contexts (OpenSSL clears the key schedule with them: EVP_CIPHER_CTX_free cleanses).
// OpenSSL comes from Node's own headers and binary, as for esp.cc (see its header comment).
#include <napi.h>

#include "batch.h"

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <string.h>

#include <memory>
#include <vector>

#if OPENSSL_VERSION_MAJOR < 3
#error "wireguard.cc needs OpenSSL 3 headers (Node 20's own, <nodedir>/include/node/openssl)"
#endif

namespace {

using tether_batch::Status;

constexpr size_t kKeyLen = 32;          // §5.4: transport keys are 32 bytes
constexpr size_t kHeaderLen = 16;       // type ‖ receiver ‖ counter, §5.4.6
constexpr size_t kCounterOffset = 8;
constexpr size_t kCounterLen = 8;
constexpr size_t kTagLen = 16;          // Poly1305, RFC 8439 §2.5
constexpr size_t kNonceLen = 12;        // RFC 8439 §2.8
constexpr size_t kNonceZeros = kNonceLen - kCounterLen;
constexpr size_t kMinMessage = kHeaderLen + kTagLen;  // an encrypted keepalive

struct Session {
  EVP_CIPHER_CTX* seal = nullptr;
  EVP_CIPHER_CTX* open = nullptr;
  ~Session() {
    EVP_CIPHER_CTX_free(seal);
    EVP_CIPHER_CTX_free(open);
  }
};

EVP_CIPHER_CTX* KeyedContext(const uint8_t* key, int encrypt) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return nullptr;
  if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), nullptr, key, nullptr, encrypt) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

inline void Nonce(const uint8_t* message, uint8_t* nonce) {
  memset(nonce, 0, kNonceZeros);
  memcpy(nonce + kNonceZeros, message + kCounterOffset, kCounterLen);
}

class WgCrypto : public Napi::ObjectWrap<WgCrypto> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "WgCrypto",
                                     {InstanceMethod("install", &WgCrypto::Install), InstanceMethod("remove", &WgCrypto::Remove),
                                      InstanceMethod("seal", &WgCrypto::Seal), InstanceMethod("open", &WgCrypto::Open),
                                      InstanceMethod("installed", &WgCrypto::Installed)});
    exports.Set("WgCrypto", cls);
  }

  explicit WgCrypto(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WgCrypto>(info) {
    slots_.resize(tether_batch::SlotCount(info, "new WgCrypto(slots)"));
  }

 private:
  // install(slot, sendKey, receiveKey): both 32 bytes; replaces what the slot held. The caller zeroes its copies.
  Napi::Value Install(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "install: slot must be a number");
    const uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
    size_t send_len = 0, recv_len = 0;
    const uint8_t* send = tether_batch::TypedData<uint8_t>(info[1], napi_uint8_array, &send_len, "sending key");
    const uint8_t* recv = tether_batch::TypedData<uint8_t>(info[2], napi_uint8_array, &recv_len, "receiving key");
    if (slot >= slots_.size()) throw Napi::RangeError::New(env, "install: slot out of range");
    if (send_len != kKeyLen || recv_len != kKeyLen) throw Napi::RangeError::New(env, "install: WireGuard transport keys are 32 bytes");
    auto s = std::make_unique<Session>();
    s->seal = KeyedContext(send, 1);
    s->open = KeyedContext(recv, 0);
    if (s->seal == nullptr || s->open == nullptr) throw Napi::Error::New(env, "install: ChaCha20-Poly1305 context setup failed");
    slots_[slot] = std::move(s);
    return env.Undefined();
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) { return tether_batch::RemoveSlot(slots_, info); }
  Napi::Value Installed(const Napi::CallbackInfo& info) { return tether_batch::CountInstalled(slots_, info); }

  Napi::Value Seal(const Napi::CallbackInfo& info) { return Batch(info, true); }
  Napi::Value Open(const Napi::CallbackInfo& info) { return Batch(info, false); }

  Napi::Value Batch(const Napi::CallbackInfo& info, bool seal) {
    return tether_batch::RunBatch(info, [this, seal](uint32_t slot, uint8_t* p, size_t len) -> Status {
      if (slot >= slots_.size() || !slots_[slot]) return tether_batch::kNoKey;
      return seal ? SealOne(slots_[slot]->seal, p, len) : OpenOne(slots_[slot]->open, p, len);
    });
  }

  static Status SealOne(EVP_CIPHER_CTX* ctx, uint8_t* p, size_t len) {
    if (len < kMinMessage) return tether_batch::kBadLength;
    uint8_t nonce[kNonceLen];
    Nonce(p, nonce);
    uint8_t* body = p + kHeaderLen;
    const int body_len = static_cast<int>(len - kMinMessage);
    int outl = 0, finl = 0;
    if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1 || (body_len > 0 && EVP_EncryptUpdate(ctx, body, &outl, body, body_len) != 1) ||
        EVP_EncryptFinal_ex(ctx, body + outl, &finl) != 1 || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagLen, body + body_len) != 1) {
      return tether_batch::kCryptoError;
    }
    return tether_batch::kOk;
  }

  static Status OpenOne(EVP_CIPHER_CTX* ctx, uint8_t* p, size_t len) {
    if (len < kMinMessage) return tether_batch::kBadLength;
    uint8_t nonce[kNonceLen];
    Nonce(p, nonce);
    uint8_t* body = p + kHeaderLen;
    const int body_len = static_cast<int>(len - kMinMessage);
    int outl = 0, finl = 0;
    if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1 || (body_len > 0 && EVP_DecryptUpdate(ctx, body, &outl, body, body_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagLen, body + body_len) != 1) {
      return tether_batch::kCryptoError;
    }
    return EVP_DecryptFinal_ex(ctx, body + outl, &finl) == 1 ? tether_batch::kOk : tether_batch::kAuthFailed;
  }

  std::vector<std::unique_ptr<Session>> slots_;
};

}  // namespace

void InitWireGuard(Napi::Env env, Napi::Object exports) {
  WgCrypto::Init(env, exports);
}
