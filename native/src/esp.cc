// tether native ESP crypto: whole batches of ESP packets sealed or opened in place, one JS<->C call per batch.
//
//   JS (src/io/esp-crypto.ts) ── seal/open(data, offset[], length[], slot[], n, status[]) ──▶ per entry, in place:
//     seal: the ESP packet is laid out by JS (header SPI ‖ seq, room for the IV, inner ‖ padding ‖ pad length ‖
//           next header, room for the ICV); this writes the IV, encrypts and writes the ICV.
//     open: verifies the ICV and decrypts in place; JS then reads the trailer (codec.ts).
//
// Algorithms (the numbering is mirrored in src/onramp/ipsec/esp/constants.ts, EspCipher / EspInteg):
//   AES-GCM-16, RFC 4106: nonce = salt (last 4 bytes of the keying material, §8.1) ‖ 8-byte explicit IV;
//     the IV is 0 ‖ the 32-bit sequence number (§3.1 asks only that it never repeats under a key: the sequence
//     number never does without ESN); AAD = SPI ‖ sequence number (§5, no ESN); ICV = the 16-byte tag.
//   AES-CBC, RFC 3602 §2: a random 16-byte IV per packet (RAND_bytes, pooled; §2.3 "MUST be chosen at random"),
//     plaintext already padded to the block by JS (no OpenSSL padding), with HMAC-SHA2-256/384/512 truncated to
//     128/192/256 bits (RFC 4868 §2.3) over header ‖ IV ‖ ciphertext (RFC 4303 §3.3.4), verified before decrypting.
//
// OpenSSL: Node 20 carries OpenSSL 3 and exports its symbols (nm -D $(which node) | grep EVP_EncryptInit_ex),
// so this file is compiled against Node's own OpenSSL headers (node-gyp's include dir, <nodedir>/include/node,
// comes before /usr/include) and links no libcrypto: the symbols resolve against the node binary when the addon
// is loaded. One EVP_CIPHER_CTX (and one EVP_MAC_CTX for CBC) per SA direction, created at install and kept;
// per packet only re-initialised with the IV: no allocation per packet.
#include <napi.h>

#include "batch.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <string.h>

#include <memory>
#include <vector>

#if OPENSSL_VERSION_MAJOR < 3
#error "esp.cc needs OpenSSL 3 headers (Node 20's own, <nodedir>/include/node/openssl)"
#endif

namespace {

constexpr int kCipherAesGcm16 = 1;
constexpr int kCipherAesCbc = 2;
constexpr int kIntegNone = 0;
constexpr int kIntegSha256 = 1;
constexpr int kIntegSha384 = 2;
constexpr int kIntegSha512 = 3;
constexpr int kDirSeal = 0;
constexpr int kDirOpen = 1;

constexpr size_t kEspHeader = 8;     // SPI ‖ sequence number, RFC 4303 §2
constexpr size_t kEspSeq = 4;
constexpr size_t kEspTrailer = 2;    // pad length ‖ next header
constexpr size_t kGcmIv = 8;         // RFC 4106 §3.1
constexpr size_t kGcmSalt = 4;       // RFC 4106 §4
constexpr size_t kGcmNonce = kGcmSalt + kGcmIv;
constexpr size_t kGcmTag = 16;       // the "-16" of AES-GCM-16
constexpr size_t kGcmAlign = 4;
constexpr size_t kAesBlock = 16;     // CBC's IV and alignment, RFC 3602
constexpr size_t kMaxMac = EVP_MAX_MD_SIZE;
// CBC IVs are drawn from a pool filled by one RAND_bytes call per 256 IVs: a call per packet cost as much as
// the AES-CBC itself at 64 bytes (RAND_bytes goes through OpenSSL 3's provider and DRBG locking each time).
constexpr size_t kIvPool = 256 * kAesBlock;

// Per-entry results: batch.h's (mirrored in src/common/crypto-entries.ts); kIcvFailed is its kAuthFailed.
using tether_batch::Status;
using tether_batch::kOk;
using tether_batch::kBadLength;
using tether_batch::kNoKey;
using tether_batch::kCryptoError;
constexpr Status kIcvFailed = tether_batch::kAuthFailed;

struct Sa {
  int dir = kDirSeal;
  int cipher = 0;
  size_t iv_len = 0;
  size_t align = 0;
  size_t icv_len = 0;
  uint8_t salt[kGcmSalt] = {};
  EVP_CIPHER_CTX* ctx = nullptr;
  EVP_MAC_CTX* mac = nullptr;

  ~Sa() {
    EVP_CIPHER_CTX_free(ctx);
    EVP_MAC_CTX_free(mac);
  }
};

using tether_batch::TypedData;

class EspCrypto : public Napi::ObjectWrap<EspCrypto> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "EspCrypto",
                                     {InstanceMethod("install", &EspCrypto::Install), InstanceMethod("remove", &EspCrypto::Remove),
                                      InstanceMethod("seal", &EspCrypto::Seal), InstanceMethod("open", &EspCrypto::Open),
                                      InstanceMethod("installed", &EspCrypto::Installed)});
    exports.Set("EspCrypto", cls);
  }

  explicit EspCrypto(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EspCrypto>(info) {
    slots_.resize(tether_batch::SlotCount(info, "new EspCrypto(slots)"));
  }

 private:
  // install(slot, direction, cipher, key, integ, integKey): key = AES key (‖ 4-byte salt for GCM).
  Napi::Value Install(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
    const int dir = info[1].As<Napi::Number>().Int32Value();
    const int cipher = info[2].As<Napi::Number>().Int32Value();
    size_t key_len = 0;
    const uint8_t* key = TypedData<uint8_t>(info[3], napi_uint8_array, &key_len, "key");
    const int integ = info[4].As<Napi::Number>().Int32Value();
    size_t ikey_len = 0;
    const uint8_t* ikey = integ == kIntegNone ? nullptr : TypedData<uint8_t>(info[5], napi_uint8_array, &ikey_len, "integrity key");
    if (slot >= slots_.size()) throw Napi::RangeError::New(env, "install: slot out of range");
    if (dir != kDirSeal && dir != kDirOpen) throw Napi::RangeError::New(env, "install: direction must be 0 (seal) or 1 (open)");

    auto sa = std::make_unique<Sa>();
    sa->dir = dir;
    sa->cipher = cipher;
    sa->ctx = EVP_CIPHER_CTX_new();
    if (sa->ctx == nullptr) throw Napi::Error::New(env, "install: EVP_CIPHER_CTX_new failed");
    const EVP_CIPHER* evp = nullptr;
    if (cipher == kCipherAesGcm16) {
      if (integ != kIntegNone) throw Napi::TypeError::New(env, "install: AES-GCM takes no integrity algorithm");
      if (key_len == 16 + kGcmSalt) evp = EVP_aes_128_gcm();
      else if (key_len == 32 + kGcmSalt) evp = EVP_aes_256_gcm();
      else throw Napi::RangeError::New(env, "install: AES-GCM keying material must be 20 or 36 bytes (key ‖ salt)");
      memcpy(sa->salt, key + key_len - kGcmSalt, kGcmSalt);
      sa->iv_len = kGcmIv;
      sa->align = kGcmAlign;
      sa->icv_len = kGcmTag;
      if (EVP_CipherInit_ex(sa->ctx, evp, nullptr, nullptr, nullptr, dir == kDirSeal) != 1 ||
          EVP_CIPHER_CTX_ctrl(sa->ctx, EVP_CTRL_GCM_SET_IVLEN, kGcmNonce, nullptr) != 1 ||
          EVP_CipherInit_ex(sa->ctx, nullptr, nullptr, key, nullptr, dir == kDirSeal) != 1) {
        throw Napi::Error::New(env, "install: AES-GCM context setup failed");
      }
    } else if (cipher == kCipherAesCbc) {
      const char* digest = integ == kIntegSha256 ? "SHA256" : integ == kIntegSha384 ? "SHA384" : integ == kIntegSha512 ? "SHA512" : nullptr;
      if (digest == nullptr) throw Napi::TypeError::New(env, "install: AES-CBC needs HMAC-SHA2-256, -384 or -512");
      if (key_len == 16) evp = EVP_aes_128_cbc();
      else if (key_len == 32) evp = EVP_aes_256_cbc();
      else throw Napi::RangeError::New(env, "install: AES-CBC key must be 16 or 32 bytes");
      const size_t hash = integ == kIntegSha256 ? 32 : integ == kIntegSha384 ? 48 : 64;
      if (ikey_len != hash) throw Napi::RangeError::New(env, "install: the HMAC key must be as long as the hash (RFC 4868 §2.1.2)");
      sa->iv_len = kAesBlock;
      sa->align = kAesBlock;
      sa->icv_len = hash / 2;  // RFC 4868 §2.3: truncated to half the output
      if (EVP_CipherInit_ex(sa->ctx, evp, nullptr, key, nullptr, dir == kDirSeal) != 1) throw Napi::Error::New(env, "install: AES-CBC context setup failed");
      EVP_CIPHER_CTX_set_padding(sa->ctx, 0);  // ESP pads itself (RFC 4303 §2.4)
      EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
      if (hmac == nullptr) throw Napi::Error::New(env, "install: HMAC is not available from OpenSSL");
      sa->mac = EVP_MAC_CTX_new(hmac);
      EVP_MAC_free(hmac);  // the context holds its own reference
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", const_cast<char*>(digest), 0), OSSL_PARAM_construct_end()};
      if (sa->mac == nullptr || EVP_MAC_init(sa->mac, ikey, ikey_len, params) != 1) throw Napi::Error::New(env, "install: HMAC context setup failed");
    } else {
      throw Napi::RangeError::New(env, "install: unknown cipher");
    }
    slots_[slot] = std::move(sa);
    return env.Undefined();
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) { return tether_batch::RemoveSlot(slots_, info); }
  Napi::Value Installed(const Napi::CallbackInfo& info) { return tether_batch::CountInstalled(slots_, info); }

  Napi::Value Seal(const Napi::CallbackInfo& info) { return Batch(info, kDirSeal); }
  Napi::Value Open(const Napi::CallbackInfo& info) { return Batch(info, kDirOpen); }

  // (data, offset, length, slot, n, status) → how many entries succeeded (batch.h's RunBatch).
  Napi::Value Batch(const Napi::CallbackInfo& info, int dir) {
    return tether_batch::RunBatch(info, [this, dir](uint32_t slot, uint8_t* p, size_t len) -> Status {
      if (slot >= slots_.size() || !slots_[slot] || slots_[slot]->dir != dir) return kNoKey;
      return dir == kDirSeal ? SealOne(*slots_[slot], p, len) : OpenOne(*slots_[slot], p, len);
    });
  }

  static bool LengthOk(const Sa& sa, size_t len) {
    if (len < kEspHeader + sa.iv_len + kEspTrailer + sa.icv_len) return false;
    return (len - kEspHeader - sa.iv_len - sa.icv_len) % sa.align == 0;
  }

  Status SealOne(Sa& sa, uint8_t* p, size_t len) {
    if (!LengthOk(sa, len)) return kBadLength;
    uint8_t* iv = p + kEspHeader;
    uint8_t* body = iv + sa.iv_len;
    const int body_len = static_cast<int>(len - kEspHeader - sa.iv_len - sa.icv_len);
    uint8_t* icv = body + body_len;
    int outl = 0;
    if (sa.cipher == kCipherAesGcm16) {
      memset(iv, 0, kGcmIv - 4);
      memcpy(iv + kGcmIv - 4, p + kEspSeq, 4);
      uint8_t nonce[kGcmNonce];
      memcpy(nonce, sa.salt, kGcmSalt);
      memcpy(nonce + kGcmSalt, iv, kGcmIv);
      if (EVP_EncryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, nonce) != 1 || EVP_EncryptUpdate(sa.ctx, nullptr, &outl, p, kEspHeader) != 1 ||
          EVP_EncryptUpdate(sa.ctx, body, &outl, body, body_len) != 1 || EVP_EncryptFinal_ex(sa.ctx, body + outl, &outl) != 1 ||
          EVP_CIPHER_CTX_ctrl(sa.ctx, EVP_CTRL_GCM_GET_TAG, kGcmTag, icv) != 1) {
        return kCryptoError;
      }
      return kOk;
    }
    if (iv_left_ < kAesBlock) {
      if (RAND_bytes(iv_pool_, kIvPool) != 1) return kCryptoError;
      iv_left_ = kIvPool;
    }
    memcpy(iv, iv_pool_ + kIvPool - iv_left_, kAesBlock);
    iv_left_ -= kAesBlock;
    if (EVP_EncryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, iv) != 1 || EVP_EncryptUpdate(sa.ctx, body, &outl, body, body_len) != 1 ||
        EVP_EncryptFinal_ex(sa.ctx, body + outl, &outl) != 1) {
      return kCryptoError;
    }
    uint8_t mac[kMaxMac];
    size_t mac_len = 0;
    if (EVP_MAC_init(sa.mac, nullptr, 0, nullptr) != 1 || EVP_MAC_update(sa.mac, p, len - sa.icv_len) != 1 ||
        EVP_MAC_final(sa.mac, mac, &mac_len, sizeof mac) != 1 || mac_len < sa.icv_len) {
      return kCryptoError;
    }
    memcpy(icv, mac, sa.icv_len);
    return kOk;
  }

  static Status OpenOne(Sa& sa, uint8_t* p, size_t len) {
    if (!LengthOk(sa, len)) return kBadLength;
    const uint8_t* iv = p + kEspHeader;
    uint8_t* body = p + kEspHeader + sa.iv_len;
    const int body_len = static_cast<int>(len - kEspHeader - sa.iv_len - sa.icv_len);
    uint8_t* icv = body + body_len;
    int outl = 0;
    if (sa.cipher == kCipherAesGcm16) {
      uint8_t nonce[kGcmNonce];
      memcpy(nonce, sa.salt, kGcmSalt);
      memcpy(nonce + kGcmSalt, iv, kGcmIv);
      if (EVP_DecryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, nonce) != 1 || EVP_DecryptUpdate(sa.ctx, nullptr, &outl, p, kEspHeader) != 1 ||
          EVP_DecryptUpdate(sa.ctx, body, &outl, body, body_len) != 1 || EVP_CIPHER_CTX_ctrl(sa.ctx, EVP_CTRL_GCM_SET_TAG, kGcmTag, icv) != 1) {
        return kCryptoError;
      }
      return EVP_DecryptFinal_ex(sa.ctx, body + outl, &outl) == 1 ? kOk : kIcvFailed;
    }
    uint8_t mac[kMaxMac];
    size_t mac_len = 0;
    if (EVP_MAC_init(sa.mac, nullptr, 0, nullptr) != 1 || EVP_MAC_update(sa.mac, p, len - sa.icv_len) != 1 ||
        EVP_MAC_final(sa.mac, mac, &mac_len, sizeof mac) != 1 || mac_len < sa.icv_len) {
      return kCryptoError;
    }
    if (CRYPTO_memcmp(mac, icv, sa.icv_len) != 0) return kIcvFailed;  // constant time: no ICV oracle
    if (EVP_DecryptInit_ex(sa.ctx, nullptr, nullptr, nullptr, iv) != 1 || EVP_DecryptUpdate(sa.ctx, body, &outl, body, body_len) != 1 ||
        EVP_DecryptFinal_ex(sa.ctx, body + outl, &outl) != 1) {
      return kCryptoError;
    }
    return kOk;
  }

  std::vector<std::unique_ptr<Sa>> slots_;
  uint8_t iv_pool_[kIvPool] = {};
  size_t iv_left_ = 0;
};

}  // namespace

void InitEsp(Napi::Env env, Napi::Object exports) {
  EspCrypto::Init(env, exports);
}
