// tether native I/O: TUN devices for Node, one JS<->C call per batch.
//
//   kernel ──read()──▶ PacketBatch slab (owned by JS) ──one callback(count)──▶ JS pipeline
//   JS pipeline ──writeBound(slot, range|indices)──▶ write() per packet ──▶ kernel
//
// Reading is driven by a libuv poll handle (uv_poll_t, readable events) on Node's own event loop:
// no thread-pool hop per packet (Node's fs.read on a TUN fd costs one thread-pool round trip per
// packet). On each readable event the addon drains the descriptor into the batch until EAGAIN or
// the batch is full, then calls JS once. The poll is level-triggered, so whatever did not fit is
// announced again on the next loop iteration.
//
// Batch layout (src/common/packet-batch.ts): slot i occupies data[i*slotSize, (i+1)*slotSize); a
// received packet is written at offset[i] = i*slotSize + headroom, its size in length[i].
//
// Offloads (kTunFlagOffload): TUNSETOFFLOAD with checksum, TSO4/6 and USO4/6. The kernel then hands
// over GSO super-packets (up to 64 KiB, one virtio-net header for ~45 MTU-sized segments) and packets
// whose L4 checksum is still partial (NEEDS_CSUM), and accepts the same on write. The header of packet
// i is kept in vnet[i*kVnetWords ...] (a Uint16Array parallel to the batch: flags, gso_type, hdr_len,
// gso_size, csum_start, csum_offset; see kVnet* below and PacketBatch.vnet), read on every read and,
// for a handle with offloads, written back on every write so the kernel segments what JS passed on.
//
// References: tun(4) = Documentation/networking/tuntap.rst (TUNSETIFF, IFF_TUN, IFF_NO_PI,
// IFF_MULTI_QUEUE, IFF_VNET_HDR, TUNSETVNETHDRSZ); readv(2)/writev(2); uv_poll_t in the libuv docs
// ("poll handle": the fd must not be closed while the handle is active).
//
// Lifetime rules (no use-after-free when JS closes a device while a poll is active):
//  - The uv_poll_t lives in a separate heap Poller that is freed only in libuv's close callback,
//    which never runs inside our own poll callback. Handle::Close() detaches it (owner = nullptr).
//  - While reading, the JS object is kept alive by a strong reference (ObjectWrap::Ref), so the
//    garbage collector cannot finalize a handle whose poll is active.
//  - After the JS batch callback returns, OnReadable touches nothing of the handle (the callback
//    may have closed it).
//  - An environment cleanup hook closes the handle when Node (or a worker) shuts down, and each
//    Poller holds an async cleanup hook until its uv_close callback has run, so a worker's teardown
//    never unloads the addon with that callback still pending.
#include <napi.h>
#include <uv.h>
#include <v8.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "flow_cache.h"

// Big-endian field access: one pair for the flow cache and the USO coalescing below.
using tether_flow_cache::Rd16;
using tether_flow_cache::Wr16;

// esp.cc: the EspCrypto class (batched ESP seal/open over OpenSSL EVP).
void InitEsp(Napi::Env env, Napi::Object exports);
// wireguard.cc: the WgCrypto class (batched WireGuard transport-data seal/open, ChaCha20-Poly1305).
void InitWireGuard(Napi::Env env, Napi::Object exports);

namespace {

constexpr const char* kTunPath = "/dev/net/tun";
// Highest errno we count individually; larger values (none on Linux today) share the last bucket.
constexpr int kErrnoBuckets = 160;
// A handful of consecutive non-EAGAIN errors within one readable event ends the drain, so a
// persistent error (e.g. a device whose link vanished) cannot spin the loop forever.
constexpr int kMaxErrorsPerEvent = 8;
// Flag bits of openTun's second argument (mirrored in src/io/native.ts).
constexpr uint32_t kTunFlagMultiQueue = 1;
constexpr uint32_t kTunFlagVnetHdr = 2;
constexpr uint32_t kTunFlagOffload = 4;  // implies kTunFlagVnetHdr
// <linux/if_tun.h> TUNSETOFFLOAD bits. USO (TUN_F_USO4/6, kernel >= 6.2) is newer than the libc headers
// of Debian 12, hence spelled out; the values are the kernel's uapi.
constexpr unsigned kTunFCsum = 0x01;
constexpr unsigned kTunFTso4 = 0x02;
constexpr unsigned kTunFTso6 = 0x04;
constexpr unsigned kTunFUso4 = 0x20;
constexpr unsigned kTunFUso6 = 0x40;
// virtio 1.x section 5.1.6: header flags and GSO types we act on.
constexpr uint8_t kVnetFNeedsCsum = 1;
constexpr uint8_t kVnetFDataValid = 2;
constexpr uint8_t kVnetGsoNone = 0;
constexpr uint8_t kVnetGsoUdpL4 = 5;  // VIRTIO_NET_HDR_GSO_UDP_L4: USO, gso_size bytes of UDP payload per segment
// Per-packet header words in the JS vnet array (mirrored in src/common/packet-batch.ts).
constexpr uint32_t kVnetWords = 6;
enum VnetWord : uint32_t { kVFlags = 0, kVGsoType = 1, kVHdrLen = 2, kVGsoSize = 3, kVCsumStart = 4, kVCsumOffset = 5 };
// The virtio-net header that precedes every packet with IFF_VNET_HDR: struct virtio_net_hdr_mrg_rxbuf
// of <linux/virtio_net.h> (virtio 1.x spec, section 5.1.6 "Device Operation"), spelled out here
// because that kernel header does not compile as C++ (a member is named `class`). 12 bytes, the
// layout of virtio 1.0 and vhost; tun(4) defaults to the 10-byte legacy header without num_buffers,
// so we set the size explicitly with TUNSETVNETHDRSZ.
struct VnetHdr {
  uint8_t flags;         // VIRTIO_NET_HDR_F_NEEDS_CSUM (1), VIRTIO_NET_HDR_F_DATA_VALID (2)
  uint8_t gso_type;      // VIRTIO_NET_HDR_GSO_NONE (0), TCPV4 (1), UDP (3), TCPV6 (4), ...
  uint16_t hdr_len;      // little-endian, like every field below
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(VnetHdr) == 12, "virtio_net_hdr_mrg_rxbuf is 12 bytes");
constexpr int kVnetHdrSize = sizeof(VnetHdr);

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : "errno " + std::to_string(err);
}

// Throws a JS Error whose message names the errno, with .code (e.g. "EBUSY") and .errno set.
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& what, int err, const std::string& hint = "") {
  std::string msg = what + ": " + ErrnoName(err) + " (" + strerror(err) + ")";
  if (!hint.empty()) msg += "; " + hint;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  throw e;
}

// A typed array's element pointer and element count, checked for the expected element type.
template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;
};

template <typename T>
bool GetView(napi_env env, napi_value value, napi_typedarray_type want, View<T>* out) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok) return false;
  if (type != want) return false;
  out->data = static_cast<T*>(data);
  out->length = length;
  return true;
}

template <typename T>
View<T> RequireView(const Napi::Value& value, napi_typedarray_type want, const char* what) {
  View<T> v;
  if (!GetView(value.Env(), value, want, &v)) throw Napi::TypeError::New(value.Env(), std::string(what) + " has the wrong type");
  return v;
}

bool IsNullish(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

// ---- views bound once ------------------------------------------------------------------------------
// A wakeup or a write used to re-read its typed arrays through node-api on every call (napi_get_reference_value,
// IsTypedArray, napi_get_typedarray_info: ~8 µs of CPU per ping round trip on a cold core, docs/PERFORMANCE.md "What
// one wakeup costs"). Now each array is checked once, when JS binds it (startReading, bindWrite), and the addon
// keeps its raw element pointer. That pointer stays valid because the addon also keeps the array's backing store
// (V8's std::shared_ptr<v8::BackingStore>): a bound ArrayBuffer's memory is never freed under the addon, even if JS
// dropped the array or detached its buffer (postMessage with a transfer list, structuredClone with transfer). tether
// never transfers a batch's buffer (the lanes pass SharedArrayBuffers only); if one were, the addon would go on
// reading into and writing from memory no JS object sees any more: packets lost, never a use-after-free. A
// typed array of up to 64 bytes starts on V8's heap, where the GC may move it: napi_get_typedarray_info materialises
// it off the heap first (JSTypedArray::GetBuffer), so the kept pointer is stable. A resizable ArrayBuffer (whose
// shrinking decommits pages) is refused.
struct Keep {
  std::shared_ptr<v8::BackingStore> store;
  void Reset() { store.reset(); }
};

// The backing store of a typed array checked by GetView (napi_value and v8::Local<v8::Value> are the same handle:
// node's own v8impl::V8LocalValueFromJsValue converts them with this copy).
bool KeepBacking(napi_value value, Keep* out) {
  v8::Local<v8::Value> local;
  static_assert(sizeof(local) == sizeof(value), "napi_value is a v8::Local<v8::Value>");
  memcpy(static_cast<void*>(&local), &value, sizeof(value));
  if (!local->IsArrayBufferView()) return false;
  std::shared_ptr<v8::BackingStore> store = local.As<v8::ArrayBufferView>()->Buffer()->GetBackingStore();
  if (store == nullptr || store->IsResizableByUserJavaScript()) return false;
  out->store = std::move(store);
  return true;
}

// GetView, then keeps the backing store (see above). Throws a TypeError naming `what` when the array is unfit.
template <typename T>
View<T> BindView(const Napi::Value& value, napi_typedarray_type want, const char* what, Keep* keep) {
  View<T> v = RequireView<T>(value, want, what);
  if (!KeepBacking(value, keep)) throw Napi::TypeError::New(value.Env(), std::string(what) + ": a resizable ArrayBuffer cannot be bound");
  return v;
}

// A batch's arrays bound for writing (bindWrite): indices (Uint32Array or Uint16Array) and vnet optional.
struct WriteBinding {
  bool bound = false;
  View<uint8_t> data;
  View<uint32_t> offset, length, idx32;
  View<uint16_t> idx16, vnet;
  Keep keep[5];
  void Reset() {
    *this = WriteBinding{};
  }
};
// Bindings per handle (bindWrite's slot): each (batch, indices) pair the edge writes to one TUN from — read batches,
// the pipeline's generated and feedback batches, GRO's arena, the segments of software GSO — has its own.
constexpr uint32_t kWriteSlots = 8;

struct Counters {
  double packets_in = 0, bytes_in = 0, batches_in = 0;
  double packets_out = 0, bytes_out = 0, batches_out = 0;
  double drops_busy = 0;       // EAGAIN on write: the kernel queue was full; never block
  double drops_truncated = 0;  // packet larger than a slot (read() returned more than the slot holds)
  double drops_invalid = 0;    // written entry outside the slab, or empty
  double drops_offload = 0;    // written entry with GSO / NEEDS_CSUM to a handle without offloads
  double gso_in = 0, gso_out = 0;  // GSO super-packets read / written (each counted once in packets_*)
  double coalesced_out = 0;        // datagrams written inside a USO super-packet the addon built (see CoalesceUdp)
  double read_errors[kErrnoBuckets] = {};
  double write_errors[kErrnoBuckets] = {};
  static int Bucket(int err) { return err > 0 && err < kErrnoBuckets ? err : kErrnoBuckets - 1; }
};

class Handle;

// ---- busy polling ------------------------------------------------------------------------------
// An idle daemon sleeps in epoll_wait; the next packet then pays a thread wakeup, on a VM an idle vCPU's
// wakeup (tens of µs here). With a budget set (setBusyPoll(us), the daemon's `busy_poll_us`), a readable
// event that carried packets is followed by a spin: poll() with a zero timeout over every TUN this thread
// reads, each ready one drained and handed to JS as on a libuv event, until no packet has come for the
// budget. Adaptive by construction: only a wakeup with packets starts a spin, so an idle daemon still sleeps
// and one packet costs at most one budget of CPU. A spin that keeps finding packets hands control back to
// libuv after kBusyPollMaxSessionNs, so timers, the API and health probes are never starved (libuv's next
// epoll_wait returns at once while a TUN is still readable).
constexpr int64_t kNsPerUs = 1000;
// Upper bound of busy_poll_us (mirrored in the config schema): beyond a millisecond a spin is a core.
constexpr int64_t kBusyPollMaxUs = 1000;
// One spin session at most this long, however many packets it catches (see above).
constexpr int64_t kBusyPollMaxSessionNs = 1000 * kNsPerUs;
// TUN queues one spin watches, at most (the daemon reads a handful: underlay, egress, one per interconnect).
constexpr size_t kBusyPollMaxFds = 64;

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no system call
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Follow-through (flow cache): after a wakeup whose cache hits were written to an egress TUN, the addon reads that
// TUN once more before it returns to libuv, and so on along the hits, at most this many hops. A reply that is already
// queued there (when the peer answers within the write itself, as a local namespace or host does: the kernel runs its
// whole path in the writer's softirq) then goes out without a libuv iteration (timers, Node's check handle, an
// epoll_wait); when nothing is queued it costs one read that returns EAGAIN, and a handle whose follow-through reads
// keep finding nothing backs off (FollowDue: 2, 4, ... up to 2^kFollowMaxMissShift wakeups skipped), so one-way
// traffic does not pay that read on every wakeup. Bounded, so libuv is never starved.
constexpr int kFollowMaxHops = 4;
constexpr uint32_t kFollowMaxMissShift = 6;  // at most 64 follow-throughs skipped after a miss

// Per thread (the main thread, or a worker with its own loop): the handles reading on this thread's loop.
struct BusyPollState {
  std::vector<Handle*> readers;
  uint64_t generation = 0;  // bumped on every change of `readers`: a spin re-polls instead of using stale pointers
  int64_t budget_ns = 0;    // 0: off
  bool spinning = false;
  double sessions = 0, spin_ns = 0, packets = 0, batches = 0;
};
thread_local BusyPollState tls_busy;

// ---- the native flow cache (flow_cache.h) ------------------------------------------------------------
// Per thread, like the busy poll: a thread's handles, its pipeline's counters and its table. Allocated on
// flowCacheEnable(true), not as thread_local storage itself (a 300 KiB static TLS block can fail the addon's dlopen).
struct FlowCacheState {
  std::unique_ptr<tether_flow_cache::Table> table;
  // The pipeline's per-port counters (PipelineCounters rxPackets, rxBytes, txPackets, txBytes): a hit counts where JS
  // would have, so /metrics and health see every packet at once.
  View<double> rx_packets, rx_bytes, tx_packets, tx_bytes;
  Keep keep[4];
  bool Active() const { return table != nullptr && table->used > 0 && rx_packets.data != nullptr; }
  // The egress handle the last wakeup's cache hits were written to, and tls_busy.generation then (see FollowThrough).
  void* follow = nullptr;
  uint64_t follow_generation = 0;
};
thread_local FlowCacheState tls_cache;

void BusyPollAdd(Handle* h) {
  auto& r = tls_busy.readers;
  if (std::find(r.begin(), r.end(), h) == r.end()) { r.push_back(h); tls_busy.generation++; }
}

void BusyPollRemove(Handle* h) {
  auto& r = tls_busy.readers;
  auto it = std::find(r.begin(), r.end(), h);
  if (it != r.end()) { r.erase(it); tls_busy.generation++; }
}

void BusySpin();
void FollowThrough();

// The libuv poll handle, kept apart from Handle so that it can outlive it until uv_close's callback.
// Each Poller holds an async environment cleanup hook from creation until that callback has run:
// a worker thread's teardown then waits for the callback before it unloads this addon (without
// it, libuv would call the close callback into unmapped code: seen as a SIGSEGV on
// worker.terminate() while reading).
struct Poller {
  uv_poll_t poll;
  Handle* owner;
  napi_async_cleanup_hook_handle hook;
};

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeHandle", {
      InstanceAccessor<&Handle::GetFd>("fd"),
      InstanceAccessor<&Handle::GetName>("name"),
      InstanceAccessor<&Handle::GetVnetHdrSize>("vnetHdrSize"),
      InstanceAccessor<&Handle::GetOffloads>("offloads"),
      InstanceMethod<&Handle::StartReading>("startReading"),
      InstanceMethod<&Handle::StopReading>("stopReading"),
      InstanceMethod<&Handle::BindWrite>("bindWrite"),
      InstanceMethod<&Handle::WriteBound>("writeBound"),
      InstanceMethod<&Handle::GetCounters>("counters"),
      InstanceMethod<&Handle::CloseJs>("close"),
    });
    // The constructor lives in the environment's instance data (one per main thread or worker).
    env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(cls)));
    return exports;
  }

  // Not callable from JS directly: openTun creates handles through New(); the constructor only
  // records the fd handed over in info[0..].
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "NativeHandle is created by openTun");
    fd_ = info[0].As<Napi::Number>().Int32Value();
    name_ = info[1].As<Napi::String>().Utf8Value();
    vnet_hdr_size_ = info[2].As<Napi::Number>().Int32Value();
    offloads_ = info.Length() > 3 ? info[3].As<Napi::Number>().Uint32Value() : 0;
    env_ = env;
    napi_add_env_cleanup_hook(env, &Handle::CleanupHook, this);
  }

  ~Handle() override {
    // Finalized by the GC (or at shutdown). A handle still reading is strongly referenced, so
    // here a poll is active only at environment teardown (and the cleanup hook has normally closed
    // it already); the wrapper's own reference is being torn down, so do not Unref it.
    reading_ = false;
    Close();
  }

  static Napi::Object New(Napi::Env env, int fd, const std::string& name, int vnet_hdr_size, unsigned offloads) {
    return env.GetInstanceData<Napi::FunctionReference>()->New(
        {Napi::Number::New(env, fd), Napi::String::New(env, name), Napi::Number::New(env, vnet_hdr_size), Napi::Number::New(env, offloads)});
  }

 private:
  // ---- accessors -------------------------------------------------------------------------------
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetVnetHdrSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), vnet_hdr_size_); }
  // The TUN_F_* bits TUNSETOFFLOAD accepted (0: none).
  Napi::Value GetOffloads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), offloads_); }

  void RequireOpen(Napi::Env env) {
    if (fd_ < 0) throw Napi::Error::New(env, "the device is closed");
  }

  // ---- reading ---------------------------------------------------------------------------------
  // startReading(data: Uint8Array, offset: Uint32Array, length: Uint32Array, slotSize, headroom,
  //              capacity, onBatch(count, err), vnet?: Uint16Array (capacity * kVnetWords))
  // The arrays are bound once, here ("views bound once"): a wakeup uses the kept pointers, no node-api call.
  // Calling startReading again (a new batch) rebinds.
  Napi::Value StartReading(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    if (info.Length() < 7 || !info[6].IsFunction()) throw Napi::TypeError::New(env, "startReading(data, offset, length, slotSize, headroom, capacity, onBatch)");
    const uint32_t slot = info[3].As<Napi::Number>().Uint32Value();
    const uint32_t headroom = info[4].As<Napi::Number>().Uint32Value();
    const uint32_t capacity = info[5].As<Napi::Number>().Uint32Value();
    if (capacity == 0 || headroom >= slot) throw Napi::RangeError::New(env, "bad batch geometry");
    if (vnet_hdr_size_ > 0 && slot - headroom <= static_cast<uint32_t>(vnet_hdr_size_))
      throw Napi::RangeError::New(env, "slot too small for the virtio-net header");
    Keep keep[4];
    auto data = BindView<uint8_t>(info[0], napi_uint8_array, "data", &keep[0]);
    auto offset = BindView<uint32_t>(info[1], napi_uint32_array, "offset", &keep[1]);
    auto length = BindView<uint32_t>(info[2], napi_uint32_array, "length", &keep[2]);
    if (data.length < static_cast<size_t>(capacity) * slot || offset.length < capacity || length.length < capacity)
      throw Napi::RangeError::New(env, "batch arrays are smaller than capacity x slotSize");
    const bool has_vnet = info.Length() > 7 && !IsNullish(info[7]);
    View<uint16_t> vnet;
    if (has_vnet) {
      vnet = BindView<uint16_t>(info[7], napi_uint16_array, "vnet", &keep[3]);
      if (vnet.length < static_cast<size_t>(capacity) * kVnetWords) throw Napi::RangeError::New(env, "vnet array smaller than capacity x 6");
    }
    StopPolling();
    ReleaseReadRefs();
    slot_ = slot;
    headroom_ = headroom;
    capacity_ = capacity;
    read_data_ = data;
    read_offset_ = offset;
    read_length_ = length;
    read_vnet_ = vnet;
    for (int k = 0; k < 4; k++) read_keep_[k] = std::move(keep[k]);
    callback_ = Napi::Persistent(info[6].As<Napi::Function>());
    if (!async_context_) async_context_ = std::make_unique<Napi::AsyncContext>(env, "tether:tun");
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    Poller* p = new Poller();
    p->owner = this;
    int rc = uv_poll_init(loop, &p->poll, fd_);
    if (rc != 0) {  // not initialised: the loop does not know it, so it can simply be freed
      delete p;
      ReleaseReadRefs();
      throw Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc));
    }
    napi_add_async_cleanup_hook(env, &Handle::PollerCleanupHook, p, &p->hook);
    poller_ = p;
    rc = uv_poll_start(&p->poll, UV_READABLE, &Handle::OnPoll);
    if (rc != 0) {
      DetachPoller();
      ReleaseReadRefs();
      throw Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(rc));
    }
    if (!reading_) { Ref(); reading_ = true; }
    BusyPollAdd(this);
    return env.Undefined();
  }

  Napi::Value StopReading(const Napi::CallbackInfo& info) {
    StopPolling();
    ReleaseReadRefs();
    return info.Env().Undefined();
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Poller* p = reinterpret_cast<Poller*>(handle);  // poll is the first member
    if (p->owner == nullptr) return;
    // The handle may be closed by its callback: FollowThrough and BusySpin touch only handles still registered.
    if (p->owner->OnReadable(status) > 0) {
      FollowThrough();
      BusySpin();
    }
  }

 public:
  int fd() const { return fd_; }

  // Drains the queue into the batch and calls JS once; returns the packets handed over (0: none, or an error).
  uint32_t OnReadable(int status) {
    Napi::Env env = env_;
    int fatal = 0;
    uint32_t count = 0;
    tls_cache.follow = nullptr;  // set again by this wakeup's cache hits, if any
    if (status < 0) {
      fatal = status;
    } else if (read_data_.data == nullptr) {
      fatal = UV_EINVAL;  // not bound (cannot happen while polling: startReading binds before it polls)
    } else {
      count = DrainTun(read_data_, read_offset_, read_length_, read_vnet_.data);
    }
    if (fatal != 0) StopPolling();
    if (count == 0 && fatal == 0) return 0;
    // The flow cache takes the packets of installed flows (a wakeup of a few packets only: see kMaxBatch); the rest
    // stay in the batch, compacted. When none is left, JS is not called at all.
    const uint32_t read = count;
    if (fatal == 0 && count <= tether_flow_cache::kMaxBatch && tls_cache.Active()) {
      count = ForwardCached(count);
      if (count == 0) {
        tls_cache.table->stats.wakeups_without_js += 1;
        return read;
      }
    }
    if (count > 0) counters_.batches_in += 1;
    // Opened only now: a wakeup the flow cache served whole makes no JS value at all.
    Napi::HandleScope scope(env);
    // One call into JS per batch. MakeCallback runs the microtask queue afterwards and keeps async
    // hooks' context. The callback may close this handle: touch nothing of `this` afterwards except
    // through values copied to the stack first.
    napi_value argv[2] = {Napi::Number::New(env, count), Napi::Number::New(env, fatal)};
    // `recv` (this handle's JS object) stays in the HandleScope for the rest of this function, so
    // the wrapper cannot be finalized under us even if the callback closes and drops it.
    napi_value recv = Value();
    napi_value fn = callback_.Value();
    napi_value result;
    napi_status st = napi_make_callback(env, *async_context_, recv, fn, 2, argv, &result);
    if (st == napi_pending_exception) {
      // A throw in the batch callback has no JS caller to land in: make it an uncaught exception.
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
    if (fatal != 0 && fd_ >= 0) ReleaseReadRefs();
    return fatal == 0 ? read : 0;
  }

  // The flow cache's pass over the `count` packets just read (see flow_cache.h): hits rewritten and written to their
  // egress handle; misses kept for JS, moved down in the batch's offset/length/vnet arrays (the bytes stay). Per-flow
  // order: once a packet goes to JS, later packets between the same two addresses go too (a fragment carries no
  // ports, so the addresses are what ties it to its flow), so a flow's packets never overtake each other.
  uint32_t ForwardCached(uint32_t count) {
    using namespace tether_flow_cache;
    Table& table = *tls_cache.table;
    uint32_t punted_src[kMaxBatch], punted_dst[kMaxBatch];
    uint32_t punted = 0, kept = 0;
    for (uint32_t i = 0; i < count; i++) {
      uint8_t* p = read_data_.data + read_offset_.data[i];
      const size_t len = read_length_.data[i];
      uint16_t* w = read_vnet_.data != nullptr ? read_vnet_.data + static_cast<size_t>(i) * kVnetWords : nullptr;
      Key k;
      bool hit = false;
      if (ParseKey(p, len, this, &k)) {
        bool blocked = false;
        for (uint32_t j = 0; j < punted && !blocked; j++) blocked = punted_src[j] == k.src && punted_dst[j] == k.dst;
        const int32_t at = blocked ? -1 : table.Find(k);
        if (at >= 0) {
          Entry& e = table.entries[at];
          // A partial checksum or a GSO super-packet (TUN offloads) is JS's, like anything Forwardable refuses.
          // DATA_VALID (the sender's checksum was verified) is kept, as JS's write keeps the header it read.
          if ((w == nullptr || ((w[kVFlags] & kVnetFNeedsCsum) == 0 && w[kVGsoType] == kVnetGsoNone)) && Forwardable(p) && (!e.df_only || HasDf(p))) {
            tls_cache.rx_packets.data[e.in_port] += 1;
            tls_cache.rx_bytes.data[e.in_port] += static_cast<double>(len);
            tls_cache.tx_packets.data[e.out_port] += 1;
            tls_cache.tx_bytes.data[e.out_port] += static_cast<double>(len);
            Table::Rewrite(e, p);
            static_cast<Handle*>(e.egress)->WriteOne(p, len, w != nullptr ? static_cast<uint8_t>(w[kVFlags] & kVnetFDataValid) : 0);
            tls_cache.follow = e.egress;
            tls_cache.follow_generation = tls_busy.generation;
            e.packets += 1;
            e.bytes += static_cast<double>(len);
            table.stats.hits += 1;
            table.stats.hit_bytes += static_cast<double>(len);
            hit = true;
          } else {
            table.stats.punts += 1;
          }
        }
      }
      if (hit) continue;
      if (len >= kIpv4Header && p[0] >> 4 == 4) {
        punted_src[punted] = Rd32(p + kIpSrc);
        punted_dst[punted] = Rd32(p + kIpDst);
        punted++;
      }
      if (kept != i) {
        read_offset_.data[kept] = read_offset_.data[i];
        read_length_.data[kept] = read_length_.data[i];
        if (w != nullptr) memmove(read_vnet_.data + static_cast<size_t>(kept) * kVnetWords, w, kVnetWords * sizeof(uint16_t));
      }
      kept++;
    }
    return kept;
  }

  // Follow-through's backoff (see kFollowMaxHops): a handle whose follow-through reads found nothing skips the next
  // 2^misses of them (at most 2^kFollowMaxMissShift = 64), so a one-way flood pays ~1 EAGAIN read per 64 wakeups.
  bool FollowDue() {
    if (follow_skip_ == 0) return true;
    follow_skip_--;
    return false;
  }
  void FollowRead(bool found) {
    if (found) { follow_misses_ = 0; return; }
    if (follow_misses_ < kFollowMaxMissShift) follow_misses_++;
    follow_skip_ = 1u << follow_misses_;
  }

  // One packet written by the flow cache: with IFF_VNET_HDR a header with no GSO and no partial checksum, DATA_VALID
  // as read (`flags`), as writeBound writes such a packet; counted like writeBound's; EAGAIN is drops_busy (never block).
  void WriteOne(uint8_t* p, size_t len, uint8_t flags) {
    if (fd_ < 0) { counters_.drops_invalid += 1; return; }
    VnetHdr hdr = {};
    hdr.flags = flags;
    const ssize_t r = WritePacket(hdr, p, len);
    if (r < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) counters_.drops_busy += 1;
      else counters_.write_errors[Counters::Bucket(err)] += 1;
      return;
    }
    counters_.packets_out += 1;
    counters_.bytes_out += static_cast<double>(len);
  }

 private:

  // After a failed read: true to try again (EINTR, or an error counted while fewer than
  // kMaxErrorsPerEvent have happened in this event), false to stop draining (EAGAIN: queue empty).
  bool KeepDraining(int err, int* errors) {
    if (err == EINTR) return true;
    if (err == EAGAIN || err == EWOULDBLOCK) return false;
    counters_.read_errors[Counters::Bucket(err)] += 1;
    return ++*errors < kMaxErrorsPerEvent;
  }

  // tun(4): every read() returns exactly one packet; with IFF_NO_PI there is no prefix. A packet
  // larger than the buffer is silently cut, but read() still returns its full size (tun_put_user
  // returns the total), so `n > room` detects truncation.
  uint32_t DrainTun(View<uint8_t>& data, View<uint32_t>& offset, View<uint32_t>& length, uint16_t* vnet_out) {
    const size_t room = slot_ - headroom_;
    uint32_t n = 0;
    int errors = 0;
    VnetHdr vnet;  // with IFF_VNET_HDR: the header lands here, not in the slot
    while (n < capacity_) {
      uint8_t* dst = data.data + static_cast<size_t>(n) * slot_ + headroom_;
      ssize_t r;
      if (vnet_hdr_size_ > 0) {
        // With TUNSETOFFLOAD, gso_type != NONE marks a GSO super-packet (up to 64 KiB) and NEEDS_CSUM a
        // packet whose L4 checksum field holds only the pseudo-header sum: both go to JS in vnet_out.
        struct iovec iov[2] = {{&vnet, static_cast<size_t>(vnet_hdr_size_)}, {dst, room}};
        r = readv(fd_, iov, 2);
        if (r >= 0 && r < vnet_hdr_size_) { counters_.drops_truncated += 1; continue; }  // cannot happen per tun(4)
        if (r >= 0) r -= vnet_hdr_size_;
      } else {
        r = read(fd_, dst, room);
      }
      if (r < 0) {
        if (KeepDraining(errno, &errors)) continue;
        break;
      }
      if (static_cast<size_t>(r) > room) { counters_.drops_truncated += 1; continue; }
      offset.data[n] = static_cast<uint32_t>(dst - data.data);
      length.data[n] = static_cast<uint32_t>(r);
      if (vnet_out != nullptr) {
        uint16_t* w = vnet_out + static_cast<size_t>(n) * kVnetWords;
        if (vnet_hdr_size_ > 0) {
          // virtio 1.x: the 16-bit fields are little-endian, like this machine (x86_64, arm64 LE).
          w[kVFlags] = vnet.flags;
          w[kVGsoType] = vnet.gso_type;
          w[kVHdrLen] = vnet.hdr_len;
          w[kVGsoSize] = vnet.gso_size;
          w[kVCsumStart] = vnet.csum_start;
          w[kVCsumOffset] = vnet.csum_offset;
          if (vnet.gso_type != kVnetGsoNone) counters_.gso_in += 1;
        } else {
          memset(w, 0, kVnetWords * sizeof(uint16_t));
        }
      }
      counters_.packets_in += 1;
      counters_.bytes_in += static_cast<double>(r);
      n++;
    }
    return n;
  }

  // ---- writing ---------------------------------------------------------------------------------
  // bindWrite(slot, data, offset, length, indices: Uint32Array|Uint16Array|null, vnet: Uint16Array|null)
  // Binds a batch (and the index list it is written by, if any) to write slot `slot` (0..kWriteSlots-1), replacing
  // what the slot held: writeBound(slot, ...) then writes from it with no node-api call on the arrays ("views bound
  // once"). TunDevice keeps the slots (src/io/tun.ts): JS compares the arrays, the addon never needs to.
  Napi::Value BindWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    if (info.Length() < 6 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "bindWrite(slot, data, offset, length, indices, vnet)");
    const uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
    if (slot >= kWriteSlots) throw Napi::RangeError::New(env, "bindWrite: slot must be below " + std::to_string(kWriteSlots));
    WriteBinding b;
    b.data = BindView<uint8_t>(info[1], napi_uint8_array, "data", &b.keep[0]);
    b.offset = BindView<uint32_t>(info[2], napi_uint32_array, "offset", &b.keep[1]);
    b.length = BindView<uint32_t>(info[3], napi_uint32_array, "length", &b.keep[2]);
    if (!IsNullish(info[4])) {
      if (!GetView(env, info[4], napi_uint32_array, &b.idx32) && !GetView(env, info[4], napi_uint16_array, &b.idx16))
        throw Napi::TypeError::New(env, "indices must be a Uint32Array or Uint16Array");
      if (!KeepBacking(info[4], &b.keep[3])) throw Napi::TypeError::New(env, "indices: a resizable ArrayBuffer cannot be bound");
    }
    if (!IsNullish(info[5])) b.vnet = BindView<uint16_t>(info[5], napi_uint16_array, "vnet", &b.keep[4]);
    b.bound = true;
    write_[slot] = std::move(b);
    return env.Undefined();
  }

  // writeBound(slot, from, to) -> packets written, from the arrays bound to `slot`: packets `indices[from..to)` when
  // indices were bound, else `from..to`. Never blocks: EAGAIN counts the rest of the batch as dropped-busy and
  // returns. With a bound `vnet` (capacity x kVnetWords, see PacketBatch.vnet) each packet is written with its own
  // virtio-net header: GSO and NEEDS_CSUM packets then go to the kernel whole, which segments and checksums them. A
  // handle without offloads refuses such a packet (counted in dropsOffload): the caller segments in software first.
  Napi::Value WriteBound(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    uint32_t args[3];
    for (int k = 0; k < 3; k++) {
      if (napi_get_value_uint32(env, info[k], &args[k]) != napi_ok) throw Napi::TypeError::New(env, "writeBound(slot, from, to): numbers");
    }
    const uint32_t slot = args[0], from = args[1], to = args[2];
    if (slot >= kWriteSlots || !write_[slot].bound) throw Napi::RangeError::New(env, "writeBound: slot " + std::to_string(slot) + " is not bound");
    const WriteBinding& b = write_[slot];
    const bool has_idx = b.idx32.data != nullptr || b.idx16.data != nullptr;
    const size_t limit = has_idx ? (b.idx32.data ? b.idx32.length : b.idx16.length) : b.offset.length;
    if (from > to || to > limit || (!has_idx && to > b.length.length)) throw Napi::RangeError::New(env, "writeBound range out of bounds");
    uint32_t written;
    if (!has_idx) {
      auto packet_at = [&](uint32_t j) -> uint32_t { return j; };  // j < to <= both lengths
      auto bytes_of = [&](uint32_t i, uint8_t** p, size_t* len) -> bool { return BytesOf(b.data, b.offset, b.length, i, p, len); };
      written = WriteTun(from, to, packet_at, bytes_of, b.vnet);
    } else {
      auto packet_at = [&](uint32_t j) -> uint32_t {
        const uint32_t i = b.idx32.data ? b.idx32.data[j] : b.idx16.data[j];
        return i < b.offset.length && i < b.length.length ? i : UINT32_MAX;
      };
      auto bytes_of = [&](uint32_t i, uint8_t** p, size_t* len) -> bool { return BytesOf(b.data, b.offset, b.length, i, p, len); };
      written = WriteTun(from, to, packet_at, bytes_of, b.vnet);
    }
    counters_.batches_out += 1;
    napi_value result;
    napi_create_uint32(env, written, &result);
    return Napi::Value(env, result);
  }

  // The bytes of packet i, or false when they do not lie inside the slab (or i is UINT32_MAX: outside the batch).
  static bool BytesOf(const View<uint8_t>& data, const View<uint32_t>& offset, const View<uint32_t>& length, uint32_t i, uint8_t** p, size_t* len) {
    if (i == UINT32_MAX) return false;
    const size_t off = offset.data[i], l = length.data[i];
    if (off > data.length || l > data.length - off || l == 0) return false;
    *p = data.data + off;
    *len = l;
    return true;
  }

  // tun(4): one write() per packet, each an entire IP packet (IFF_NO_PI: no prefix). With
  // IFF_VNET_HDR a virtio-net header is prepended by writev: the packet's own (from `vnet`) on a
  // handle with offloads, else an all-zero one (no checksum offload, no GSO).
  template <typename PacketAt, typename BytesOf>
  uint32_t WriteTun(uint32_t from, uint32_t to, PacketAt& packet_at, BytesOf& bytes_of, const View<uint16_t>& vnet) {
    VnetHdr hdr = {};
    uint32_t written = 0;
    for (uint32_t j = from; j < to; j++) {
      uint8_t* p;
      size_t len;
      const uint32_t i = packet_at(j);
      if (!bytes_of(i, &p, &len)) { counters_.drops_invalid += 1; continue; }
      bool gso = false;
      if (vnet.data != nullptr && static_cast<size_t>(i) * kVnetWords + kVnetWords <= vnet.length) {
        const uint16_t* w = vnet.data + static_cast<size_t>(i) * kVnetWords;
        if ((offloads_ & (kTunFUso4 | kTunFUso6)) != 0) {
          // A run of datagrams of one UDP flow goes to the kernel as one USO super-packet: one write, one
          // route lookup, one pass of the firewall for up to kUsoMaxSegments of them (see CoalesceUdp).
          const uint32_t run = CoalesceUdp(j, to, packet_at, bytes_of, vnet);
          if (run > 1) {
            const ssize_t r = WriteIov(usoIov_, usoIovCount_);
            if (r < 0) {
              const int err = errno;
              if (err == EAGAIN || err == EWOULDBLOCK) { counters_.drops_busy += to - j; break; }
              counters_.write_errors[Counters::Bucket(err)] += run;
              j += run - 1;
              continue;
            }
            written += run;
            counters_.gso_out += 1;
            counters_.coalesced_out += run;
            counters_.packets_out += run;
            counters_.bytes_out += static_cast<double>(usoBytes_);
            j += run - 1;
            continue;
          }
        }
        const bool offloaded = w[kVGsoType] != kVnetGsoNone || (w[kVFlags] & kVnetFNeedsCsum) != 0;
        if (offloaded && offloads_ == 0) { counters_.drops_offload += 1; continue; }
        hdr.flags = static_cast<uint8_t>(w[kVFlags]);
        hdr.gso_type = static_cast<uint8_t>(w[kVGsoType]);
        hdr.hdr_len = w[kVHdrLen];
        hdr.gso_size = w[kVGsoSize];
        hdr.csum_start = w[kVCsumStart];
        hdr.csum_offset = w[kVCsumOffset];
        gso = hdr.gso_type != kVnetGsoNone;
      } else {
        hdr = VnetHdr{};
      }
      const ssize_t r = WritePacket(hdr, p, len);
      if (r < 0) {
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) { counters_.drops_busy += to - j; break; }
        counters_.write_errors[Counters::Bucket(err)] += 1;
        continue;
      }
      written++;
      if (gso) counters_.gso_out += 1;
      counters_.packets_out += 1;
      counters_.bytes_out += static_cast<double>(len);
    }
    return written;
  }

  // One packet, with `hdr` in front on a handle with IFF_VNET_HDR; retried on EINTR.
  ssize_t WritePacket(VnetHdr& hdr, uint8_t* p, size_t len) {
    if (vnet_hdr_size_ > 0) {
      struct iovec iov[2] = {{&hdr, static_cast<size_t>(vnet_hdr_size_)}, {p, len}};
      return WriteIov(iov, 2);
    }
    ssize_t r;
    do r = write(fd_, p, len); while (r < 0 && errno == EINTR);
    return r;
  }

  ssize_t WriteIov(const struct iovec* iov, int n) {
    ssize_t r;
    do r = writev(fd_, iov, n); while (r < 0 && errno == EINTR);
    return r;
  }

  // ---- UDP coalescing (USO) ------------------------------------------------------------------------
  // Small UDP datagrams cost the edge one write() each, and the kernel one forwarding pass each (route lookup,
  // netfilter, the next device) inside that write: 85 % of the daemon's time under 64-byte UDP. A run of consecutive
  // entries that the kernel's own UDP GRO would merge (net/ipv4/udp_offload.c udp_gro_receive_segment, with
  // inet_gro_receive's IPv4 and ipv6_gro_receive's IPv6 rules) is written instead as one super-packet,
  // VIRTIO_NET_HDR_GSO_UDP_L4, which the kernel forwards whole and cuts back into the same datagrams where it must
  // (__udp_gso_segment: each segment gets the super-packet's headers with its own length and checksum, and for
  // IPv4 IP id = first id + k). Merged when, for each datagram:
  //  - IPv4 (needs TUN_F_USO4): no options or fragmentation; the same addresses, ports, TOS, TTL and DF as the
  //    first; IP ids consecutive (so the segments' ids are the originals, byte for byte);
  //  - IPv6 (needs TUN_F_USO6): UDP straight after the fixed header (no extension headers: a fragment header or
  //    routing header must stay with its own datagram); the same addresses, ports, traffic class, flow label and
  //    hop limit as the first (RFC 8200 section 3; ipv6_gro_receive flushes on any of them);
  //  - both: UDP whose length matches the IP length; the same payload size as the first, except the last, which may
  //    be shorter; a checksum the kernel will recompute rightly: a partial one (NEEDS_CSUM, the sender's offload) or
  //    a full one that verifies (a bad one, or an absent one, is written alone, as it came; RFC 8200 section 8.1: a
  //    zero UDP checksum is not even valid over IPv6).
  // No GSO packet is merged. The writev gathers the payloads from the batch: no copy here.
  static constexpr uint32_t kIpv4Header = 20;    // RFC 791 without options (IHL 5)
  static constexpr uint32_t kIpv6Header = 40;    // RFC 8200 section 3: the fixed header
  static constexpr uint32_t kUdpHeader = 8;      // RFC 768
  static constexpr uint32_t kUdpLength = 4, kUdpChecksum = 6;  // RFC 768 field offsets
  static constexpr uint32_t kIpv6PayloadLength = 4, kIpv6NextHeader = 6, kIpv6HopLimit = 7, kIpv6Src = 8;
  static constexpr uint32_t kIpv6AddrsAndPorts = 32 + 4;  // source, destination (RFC 8200), then the UDP ports
  static constexpr uint32_t kIpv6FirstWord = 4;  // version, traffic class, flow label
  static constexpr uint32_t kUsoMaxSegments = 64;  // UDP_MAX_SEGMENTS of older kernels: accepted everywhere
  static constexpr uint32_t kIpMaxTotal = 0xffff;  // RFC 791 total length, 16 bits (IPv6: kept as low, no jumbograms)
  static constexpr uint8_t kIpProtoUdp = 17;
  static constexpr uint16_t kIpFlagMf = 0x2000, kIpFragOffset = 0x1fff;

  // RFC 1071 one's-complement sum, not folded.
  static uint32_t Sum16(const uint8_t* p, size_t n, uint32_t sum) {
    for (size_t k = 0; k + 1 < n; k += 2) sum += Rd16(p + k);
    if (n & 1) sum += static_cast<uint32_t>(p[n - 1]) << 8;
    return sum;
  }
  static uint16_t Fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
  }
  // The UDP pseudo-header: source, destination, protocol, UDP length (RFC 768; RFC 8200 section 8.1 for IPv6).
  static uint32_t PseudoSum(const uint8_t* ip, uint32_t l3, uint32_t udp_len) {
    return l3 == kIpv4Header ? Sum16(ip + 12, 8, 0) + kIpProtoUdp + udp_len : Sum16(ip + kIpv6Src, 32, 0) + kIpProtoUdp + udp_len;
  }

  // The IP header length (kIpv4Header or kIpv6Header) of a datagram that may start or join a run of this handle,
  // 0 when it may not (see above).
  uint32_t UdpL3(const uint8_t* p, size_t len, const uint16_t* w) const {
    if (w[kVGsoType] != kVnetGsoNone || len < 1) return 0;
    if (p[0] == 0x45 && (offloads_ & kTunFUso4) != 0) {
      if (len < kIpv4Header + kUdpHeader + 1 || Rd16(p + 2) != len || p[9] != kIpProtoUdp) return 0;
      if ((Rd16(p + 6) & (kIpFlagMf | kIpFragOffset)) != 0) return 0;
      return kIpv4Header;
    }
    if (p[0] >> 4 == 6 && (offloads_ & kTunFUso6) != 0) {
      if (len < kIpv6Header + kUdpHeader + 1 || Rd16(p + kIpv6PayloadLength) != len - kIpv6Header) return 0;
      return p[kIpv6NextHeader] == kIpProtoUdp ? kIpv6Header : 0;
    }
    return 0;
  }

  // The UDP payload size of a datagram with an l3-byte IP header that may join a run, 0 when it may not.
  static uint32_t UdpCandidate(const uint8_t* p, size_t len, const uint16_t* w, uint32_t l3) {
    const uint8_t* udp = p + l3;
    if (Rd16(udp + kUdpLength) != len - l3) return 0;
    if ((w[kVFlags] & kVnetFNeedsCsum) != 0) {
      if (w[kVCsumStart] != l3 || w[kVCsumOffset] != kUdpChecksum) return 0;
    } else {
      // A full checksum must verify: coalescing must not turn a corrupt datagram into a sound one.
      if (Rd16(udp + kUdpChecksum) == 0 || Fold(Sum16(udp, len - l3, PseudoSum(p, l3, len - l3))) != 0xffff) return 0;
    }
    return static_cast<uint32_t>(len - l3 - kUdpHeader);
  }

  // Whether datagram p may follow `first` in a run (both l3-byte headers): every header field the segments will
  // copy from the first must be the same, but for the IPv4 id, which must be the previous one + 1.
  static bool SameUdpFlow(const uint8_t* p, const uint8_t* first, uint32_t l3, uint16_t prev_id) {
    if (l3 == kIpv4Header) {
      // TOS (1), ids (4-5), flags (6: DF and the reserved bit alike), TTL (8), addresses (12-19), ports (20-23).
      return p[1] == first[1] && p[8] == first[8] && Rd16(p + 6) == Rd16(first + 6) && memcmp(p + 12, first + 12, 12) == 0 &&
             Rd16(p + 4) == static_cast<uint16_t>(prev_id + 1);
    }
    return memcmp(p, first, kIpv6FirstWord) == 0 && p[kIpv6HopLimit] == first[kIpv6HopLimit] &&
           memcmp(p + kIpv6Src, first + kIpv6Src, kIpv6AddrsAndPorts) == 0;
  }

  // From entry j on: the number of datagrams merged (0 or 1: write entry j alone). With 2 or more, usoIov_ holds
  // the super-packet (virtio-net header, IP + UDP headers, the payloads) and usoBytes_ its IP length.
  template <typename PacketAt, typename BytesOf>
  uint32_t CoalesceUdp(uint32_t j, uint32_t to, PacketAt& packet_at, BytesOf& bytes_of, const View<uint16_t>& vnet) {
    auto entry = [&](uint32_t k, uint8_t** p, size_t* len, const uint16_t** w) -> bool {
      const uint32_t i = packet_at(k);
      if (!bytes_of(i, p, len) || static_cast<size_t>(i) * kVnetWords + kVnetWords > vnet.length) return false;
      *w = vnet.data + static_cast<size_t>(i) * kVnetWords;
      return true;
    };
    uint8_t* first;
    size_t first_len;
    const uint16_t* fw;
    if (j + 1 >= to || !entry(j, &first, &first_len, &fw)) return 0;
    const uint32_t l3 = UdpL3(first, first_len, fw);
    if (l3 == 0) return 0;
    const uint32_t size = UdpCandidate(first, first_len, fw, l3);
    if (size == 0) return 0;
    uint32_t run = 1, total = size;
    usoIov_[2] = {first + l3 + kUdpHeader, size};
    uint16_t id = Rd16(first + 4);
    for (uint32_t k = j + 1; k < to && run < kUsoMaxSegments; k++) {
      uint8_t* p;
      size_t len;
      const uint16_t* w;
      if (!entry(k, &p, &len, &w) || UdpL3(p, len, w) != l3) break;
      const uint32_t s = UdpCandidate(p, len, w, l3);
      if (s == 0 || s > size || l3 + kUdpHeader + total + s > kIpMaxTotal) break;
      if (!SameUdpFlow(p, first, l3, id)) break;
      id = Rd16(p + 4);
      usoIov_[2 + run] = {p + l3 + kUdpHeader, s};
      run++;
      total += s;
      if (s < size) break;  // only the last may be shorter
    }
    if (run < 2) return 1;
    // The super-packet's headers: the first datagram's, with the whole length; the UDP checksum field holds the
    // pseudo-header sum of the whole (CHECKSUM_PARTIAL, as udp4_hwcsum / udp6_hwcsum_outgoing leave it), from which
    // __udp_gso_segment derives each segment's.
    memcpy(usoHeaders_, first, l3 + kUdpHeader);
    const uint32_t ip_len = l3 + kUdpHeader + total;
    if (l3 == kIpv4Header) {
      Wr16(usoHeaders_ + 2, static_cast<uint16_t>(ip_len));
      Wr16(usoHeaders_ + 10, 0);
      Wr16(usoHeaders_ + 10, static_cast<uint16_t>(~Fold(Sum16(usoHeaders_, kIpv4Header, 0))));
    } else {
      Wr16(usoHeaders_ + kIpv6PayloadLength, static_cast<uint16_t>(ip_len - kIpv6Header));  // IPv6 has no header checksum
    }
    uint8_t* udp = usoHeaders_ + l3;
    Wr16(udp + kUdpLength, static_cast<uint16_t>(ip_len - l3));
    Wr16(udp + kUdpChecksum, Fold(PseudoSum(usoHeaders_, l3, ip_len - l3)));
    usoVnet_ = VnetHdr{};
    usoVnet_.flags = kVnetFNeedsCsum;
    usoVnet_.gso_type = kVnetGsoUdpL4;
    usoVnet_.hdr_len = static_cast<uint16_t>(l3 + kUdpHeader);
    usoVnet_.gso_size = static_cast<uint16_t>(size);
    usoVnet_.csum_start = static_cast<uint16_t>(l3);
    usoVnet_.csum_offset = kUdpChecksum;
    usoIov_[0] = {&usoVnet_, static_cast<size_t>(vnet_hdr_size_)};
    usoIov_[1] = {usoHeaders_, l3 + kUdpHeader};
    usoIovCount_ = static_cast<int>(2 + run);
    usoBytes_ = ip_len;
    return run;
  }

  // ---- counters, close -------------------------------------------------------------------------
  Napi::Value GetCounters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("packetsIn", counters_.packets_in);
    o.Set("bytesIn", counters_.bytes_in);
    o.Set("batchesIn", counters_.batches_in);
    o.Set("packetsOut", counters_.packets_out);
    o.Set("bytesOut", counters_.bytes_out);
    o.Set("batchesOut", counters_.batches_out);
    o.Set("dropsBusy", counters_.drops_busy);
    o.Set("dropsTruncated", counters_.drops_truncated);
    o.Set("dropsInvalid", counters_.drops_invalid);
    o.Set("dropsOffload", counters_.drops_offload);
    o.Set("gsoIn", counters_.gso_in);
    o.Set("gsoOut", counters_.gso_out);
    o.Set("coalescedOut", counters_.coalesced_out);
    Napi::Object re = Napi::Object::New(env), we = Napi::Object::New(env);
    for (int e = 0; e < kErrnoBuckets; e++) {
      if (counters_.read_errors[e] > 0) re.Set(ErrnoName(e), counters_.read_errors[e]);
      if (counters_.write_errors[e] > 0) we.Set(ErrnoName(e), counters_.write_errors[e]);
    }
    o.Set("readErrors", re);
    o.Set("writeErrors", we);
    return o;
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  // Environment teardown with a Poller alive: close its handle now if it is still polling (its
  // uv_close callback then lets the teardown go on); if it is already closing, that callback will.
  static void PollerCleanupHook(napi_async_cleanup_hook_handle, void* arg) {
    Poller* p = static_cast<Poller*>(arg);
    if (p->owner != nullptr) p->owner->Close();
  }

  static void CleanupHook(void* arg) {
    Handle* self = static_cast<Handle*>(arg);
    self->cleanup_hook_ran_ = true;
    self->Close();
  }

  // Stops the poll: uv_poll_stop first (libuv: never close an fd an active poll handle watches),
  // then uv_close, whose callback frees the Poller on a later loop turn.
  void DetachPoller() {
    BusyPollRemove(this);
    if (poller_ == nullptr) return;
    uv_poll_stop(&poller_->poll);
    poller_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&poller_->poll), [](uv_handle_t* h) {
      Poller* p = reinterpret_cast<Poller*>(h);
      napi_remove_async_cleanup_hook(p->hook);
      delete p;
    });
    poller_ = nullptr;
  }

  void StopPolling() {
    DetachPoller();
    if (reading_) { reading_ = false; Unref(); }
  }

  void ReleaseReadRefs() {
    read_data_ = View<uint8_t>{};
    read_offset_ = read_length_ = View<uint32_t>{};
    read_vnet_ = View<uint16_t>{};
    for (auto& k : read_keep_) k.Reset();
    callback_.Reset();
  }

  void ReleaseWriteBindings() {
    for (auto& b : write_) b.Reset();
  }

  void Close() {
    if (fd_ < 0) return;
    if (tls_cache.table != nullptr) tls_cache.table->ForgetHandle(this);
    if (tls_cache.follow == this) tls_cache.follow = nullptr;
    if (reading_) {
      // Unref only while JS is alive (not from the destructor, where the reference is being torn down).
      StopPolling();
    } else {
      DetachPoller();
    }
    ReleaseReadRefs();
    ReleaseWriteBindings();
    async_context_.reset();
    close(fd_);  // without IFF_PERSIST the TUN interface disappears here
    fd_ = -1;
    if (!cleanup_hook_ran_) napi_remove_env_cleanup_hook(env_, &Handle::CleanupHook, this);
    cleanup_hook_ran_ = true;
  }

  napi_env env_ = nullptr;
  int fd_ = -1;
  std::string name_;
  int vnet_hdr_size_ = 0;
  unsigned offloads_ = 0;
  uint32_t follow_misses_ = 0, follow_skip_ = 0;  // FollowDue / FollowRead
  bool reading_ = false;
  bool cleanup_hook_ran_ = false;
  Poller* poller_ = nullptr;
  uint32_t slot_ = 0, headroom_ = 0, capacity_ = 0;
  // The read batch's arrays, bound by startReading ("views bound once").
  View<uint8_t> read_data_;
  View<uint32_t> read_offset_, read_length_;
  View<uint16_t> read_vnet_;
  Keep read_keep_[4];
  // The batches bound for writing (bindWrite / writeBound).
  WriteBinding write_[kWriteSlots];
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  Counters counters_;
  // The USO super-packet being written (CoalesceUdp): preallocated with the handle, none per packet.
  VnetHdr usoVnet_ = {};
  uint8_t usoHeaders_[kIpv6Header + kUdpHeader] = {};
  struct iovec usoIov_[2 + kUsoMaxSegments] = {};
  int usoIovCount_ = 0;
  uint32_t usoBytes_ = 0;
};

// The spin described at "busy polling" above. Runs inside a libuv poll callback, never nested.
void BusySpin() {
  BusyPollState& b = tls_busy;
  if (b.budget_ns <= 0 || b.spinning || b.readers.empty()) return;
  b.spinning = true;
  const int64_t start = MonotonicNs();
  const int64_t session_end = start + kBusyPollMaxSessionNs;
  int64_t idle_until = start + b.budget_ns;
  struct pollfd fds[kBusyPollMaxFds];
  Handle* who[kBusyPollMaxFds];
  int64_t now = start;
  while (now < idle_until && now < session_end && b.budget_ns > 0) {
    const uint64_t generation = b.generation;
    const size_t n = std::min(b.readers.size(), kBusyPollMaxFds);
    for (size_t i = 0; i < n; i++) {
      who[i] = b.readers[i];
      fds[i] = {who[i]->fd(), POLLIN, 0};
    }
    const int ready = poll(fds, n, 0);
    for (size_t i = 0; ready > 0 && i < n; i++) {
      if (fds[i].revents == 0) continue;
      if (b.generation != generation) break;  // a callback closed or opened a handle: poll afresh
      const uint32_t got = who[i]->OnReadable(0);
      if (got > 0) {
        b.packets += got;
        b.batches += 1;
        idle_until = MonotonicNs() + b.budget_ns;
      }
    }
    now = MonotonicNs();
  }
  b.sessions += 1;
  b.spin_ns += static_cast<double>(now - start);
  b.spinning = false;
}

// The follow-through described at kFollowMaxHops. Runs inside a libuv poll callback, after its OnReadable, never nested
// (OnReadable does not call it). Touches a handle only while it is registered in tls_busy.readers and that list has
// not changed since the hit was written: a JS callback that closed or opened a handle in between ends it.
void FollowThrough() {
  for (int hop = 0; hop < kFollowMaxHops; hop++) {
    Handle* h = static_cast<Handle*>(tls_cache.follow);
    tls_cache.follow = nullptr;
    if (h == nullptr || tls_cache.follow_generation != tls_busy.generation) return;
    const auto& r = tls_busy.readers;
    if (std::find(r.begin(), r.end(), h) == r.end()) return;  // not read on this thread's loop
    if (!h->FollowDue()) return;
    const uint64_t generation = tls_busy.generation;
    const uint32_t got = h->OnReadable(0);
    // Counted in this thread's table (JS may have turned the cache off meanwhile: then there is none).
    if (tether_flow_cache::Table* t = tls_cache.table.get()) {
      t->stats.follow_reads += 1;
      t->stats.follow_packets += got;
    }
    // A JS callback in OnReadable may have closed h: it is touched again only if the reader list did not change.
    if (tls_busy.generation == generation) h->FollowRead(got > 0);
    if (got == 0) return;
  }
  tls_cache.follow = nullptr;
}

// setBusyPoll(us): the spin's budget for this thread's TUNs, 0..kBusyPollMaxUs µs (0: off, the default).
Napi::Value SetBusyPoll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double us = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(us >= 0 && us <= static_cast<double>(kBusyPollMaxUs)))
    throw Napi::RangeError::New(env, "setBusyPoll(us): us must be in 0.." + std::to_string(kBusyPollMaxUs));
  tls_busy.budget_ns = static_cast<int64_t>(us * kNsPerUs);
  return env.Undefined();
}

// busyPollCounters() -> { budgetUs, sessions, spinNs, packets, batches } of this thread (allocates: control plane).
Napi::Value BusyPollCounters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("budgetUs", static_cast<double>(tls_busy.budget_ns) / kNsPerUs);
  o.Set("sessions", tls_busy.sessions);
  o.Set("spinNs", tls_busy.spin_ns);
  o.Set("packets", tls_busy.packets);
  o.Set("batches", tls_busy.batches);
  return o;
}

// ---- the flow cache's JS face (src/io/flow-cache.ts) -------------------------------------------------
// Control plane: each call is one node-api call per install, removal or flush (a flow's direction is installed
// once), never per packet.

tether_flow_cache::Table& RequireCache(Napi::Env env) {
  if (tls_cache.table == nullptr) throw Napi::Error::New(env, "the flow cache is off on this thread (flowCacheEnable(true) first)");
  return *tls_cache.table;
}

Handle* UnwrapHandle(const Napi::Value& v, const char* what) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a NativeHandle");
  Handle* h = Napi::ObjectWrap<Handle>::Unwrap(v.As<Napi::Object>());
  if (h == nullptr || h->fd() < 0) throw Napi::Error::New(v.Env(), std::string(what) + ": the device is closed");
  return h;
}

// flowCacheEnable(on, rxPackets, rxBytes, txPackets, txBytes): on (with the pipeline's per-port Float64Arrays, bound
// once), or off (the table and the bindings dropped).
Napi::Value FlowCacheEnable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool on = info.Length() > 0 && info[0].ToBoolean().Value();
  if (!on) {
    tls_cache.table.reset();
    tls_cache.rx_packets = tls_cache.rx_bytes = tls_cache.tx_packets = tls_cache.tx_bytes = View<double>{};
    for (auto& k : tls_cache.keep) k.Reset();
    return env.Undefined();
  }
  if (info.Length() < 5) throw Napi::TypeError::New(env, "flowCacheEnable(true, rxPackets, rxBytes, txPackets, txBytes)");
  Keep keep[4];
  View<double> v[4];
  const char* names[4] = {"rxPackets", "rxBytes", "txPackets", "txBytes"};
  for (int k = 0; k < 4; k++) v[k] = BindView<double>(info[1 + k], napi_float64_array, names[k], &keep[k]);
  if (v[1].length != v[0].length || v[2].length != v[0].length || v[3].length != v[0].length)
    throw Napi::RangeError::New(env, "flowCacheEnable: the counter arrays differ in length");
  // One owner per thread: the hits count into one pipeline's counters (a second edge on this thread runs without).
  if (tls_cache.table != nullptr) throw Napi::Error::New(env, "flowCacheEnable: the flow cache is on already on this thread");
  tls_cache.table = std::make_unique<tether_flow_cache::Table>();
  tls_cache.rx_packets = v[0];
  tls_cache.rx_bytes = v[1];
  tls_cache.tx_packets = v[2];
  tls_cache.tx_bytes = v[3];
  for (int k = 0; k < 4; k++) tls_cache.keep[k] = std::move(keep[k]);
  return env.Undefined();
}

// flowCacheInstall(ingress, egress, before: Uint8Array, beforeAt, after: Uint8Array, afterAt, inPort, outPort, node, dfOnly)
//   -> slot (>= 0), -1 (not a packet or rewrite this cache takes), -2 (full: flush first)
// `before` / `after`: the packet's first 28 bytes before and after the pipeline forwarded it.
Napi::Value FlowCacheInstall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tether_flow_cache::Table& table = RequireCache(env);
  if (info.Length() < 9) throw Napi::TypeError::New(env, "flowCacheInstall(ingress, egress, before, beforeAt, after, afterAt, inPort, outPort, node)");
  Handle* in = UnwrapHandle(info[0], "ingress");
  Handle* out = UnwrapHandle(info[1], "egress");
  auto before = RequireView<uint8_t>(info[2], napi_uint8_array, "before");
  auto after = RequireView<uint8_t>(info[4], napi_uint8_array, "after");
  const double bat = info[3].As<Napi::Number>().DoubleValue(), aat = info[5].As<Napi::Number>().DoubleValue();
  const uint32_t in_port = info[6].As<Napi::Number>().Uint32Value(), out_port = info[7].As<Napi::Number>().Uint32Value();
  const int32_t node = info[8].As<Napi::Number>().Int32Value();
  constexpr size_t kBytes = tether_flow_cache::kHeaderBytes;
  if (!(bat >= 0 && bat + kBytes <= before.length) || !(aat >= 0 && aat + kBytes <= after.length))
    throw Napi::RangeError::New(env, "flowCacheInstall: the header bytes lie outside their arrays");
  if (in_port >= tls_cache.rx_packets.length || out_port >= tls_cache.rx_packets.length || node < 0)
    throw Napi::RangeError::New(env, "flowCacheInstall: port or node out of range");
  const bool df_only = info.Length() > 9 && info[9].ToBoolean().Value();
  const int32_t slot = table.Install(before.data + static_cast<size_t>(bat), after.data + static_cast<size_t>(aat), in, out, in_port, out_port, node, df_only);
  return Napi::Number::New(env, slot);
}

// flowCacheRemove(slot, node) -> whether an entry went (only if the slot still holds that node's).
Napi::Value FlowCacheRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (tls_cache.table == nullptr) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, tls_cache.table->Remove(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Int32Value()));
}

// flowCacheTake(slot, node, out: Float64Array(2)) -> flowCacheRemove's answer; the entry's hits since the last fold
// (packets, bytes) in out (a flow that ends counts them before it is logged).
Napi::Value FlowCacheTake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = RequireView<double>(info[2], napi_float64_array, "out");
  if (out.length < 2) throw Napi::RangeError::New(env, "flowCacheTake: out holds 2 numbers");
  const uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  const int32_t node = info[1].As<Napi::Number>().Int32Value();
  tether_flow_cache::Table* t = tls_cache.table.get();
  if (t == nullptr || slot >= tether_flow_cache::kCapacity) return Napi::Boolean::New(env, false);
  const tether_flow_cache::Entry& e = t->entries[slot];
  out.data[0] = e.packets;
  out.data[1] = e.bytes;
  return Napi::Boolean::New(env, t->Remove(slot, node));
}

// flowCacheLookup(ingress, packet: Uint8Array, at) -> the slot whose key the packet at `at` (its first 28 bytes; a
// packet this cache takes) matches, -1 for none: the table's lookup as the fast path does it (tests, diagnostics).
Napi::Value FlowCacheLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tether_flow_cache::Table& table = RequireCache(env);
  Handle* in = UnwrapHandle(info[0], "ingress");
  auto bytes = RequireView<uint8_t>(info[1], napi_uint8_array, "packet");
  const double at = info[2].As<Napi::Number>().DoubleValue();
  if (!(at >= 0 && at + tether_flow_cache::kHeaderBytes <= bytes.length)) throw Napi::RangeError::New(env, "flowCacheLookup: the header lies outside the array");
  tether_flow_cache::Key k;
  constexpr size_t kAnyLength = 0xffff;
  if (!tether_flow_cache::ParseKey(bytes.data + static_cast<size_t>(at), kAnyLength, in, &k)) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, table.Find(k));
}

Napi::Value FlowCacheFlush(const Napi::CallbackInfo& info) {
  if (tls_cache.table != nullptr) tls_cache.table->Flush();
  return info.Env().Undefined();
}

// flowCacheFold(out: Float64Array) -> n: the entries with hits since the last fold, as (node, packets, bytes) triples
// in out[0 .. 3n), their hits reset. `out` holds 3 x capacity numbers (flowCacheCapacity).
Napi::Value FlowCacheFold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (tls_cache.table == nullptr) return Napi::Number::New(env, 0);
  auto out = RequireView<double>(info[0], napi_float64_array, "out");
  tether_flow_cache::Table& table = *tls_cache.table;
  uint32_t n = 0;
  for (uint32_t i = 0; i < tether_flow_cache::kCapacity && (n + 1) * 3 <= out.length; i++) {
    tether_flow_cache::Entry& e = table.entries[i];
    if (e.state != tether_flow_cache::kUsed || e.packets == 0) continue;
    out.data[n * 3] = e.node;
    out.data[n * 3 + 1] = e.packets;
    out.data[n * 3 + 2] = e.bytes;
    e.packets = e.bytes = 0;
    n++;
  }
  return Napi::Number::New(env, n);
}

// flowCacheStats() -> this thread's figures (allocates: control plane).
Napi::Value FlowCacheStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const tether_flow_cache::Table* t = tls_cache.table.get();
  const tether_flow_cache::Stats s = t != nullptr ? t->stats : tether_flow_cache::Stats{};
  o.Set("enabled", t != nullptr);
  o.Set("capacity", tether_flow_cache::kCapacity);
  o.Set("entries", t != nullptr ? t->used : 0);
  o.Set("hits", s.hits);
  o.Set("hitBytes", s.hit_bytes);
  o.Set("punts", s.punts);
  o.Set("installs", s.installs);
  o.Set("refused", s.refused);
  o.Set("removals", s.removals);
  o.Set("flushes", s.flushes);
  o.Set("wakeupsWithoutJs", s.wakeups_without_js);
  o.Set("followReads", s.follow_reads);
  o.Set("followPackets", s.follow_packets);
  return o;
}

// openTun(name: string, flags: number) -> NativeHandle
// tun(4): open /dev/net/tun, then TUNSETIFF with IFF_TUN | IFF_NO_PI (raw IP packets, no 4-byte
// packet-information prefix), plus IFF_MULTI_QUEUE (one fd per queue, all opened with the same
// name and flags) and IFF_VNET_HDR when asked. No IFF_PERSIST: the device goes away with the fd.
Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "openTun(name: string, flags: number)");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const uint32_t flags = info[1].As<Napi::Number>().Uint32Value();
  if (name.size() >= IFNAMSIZ) {
    Napi::Error e = Napi::RangeError::New(env, "openTun(" + name + "): interface names are at most " + std::to_string(IFNAMSIZ - 1) + " bytes");
    e.Set("code", Napi::String::New(env, "ENAMETOOLONG"));
    throw e;
  }
  const int fd = open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      ThrowErrno(env, std::string("openTun: ") + kTunPath + " is missing", err, "the kernel needs the tun module (modprobe tun) and the device node");
    if (err == EPERM || err == EACCES) ThrowErrno(env, std::string("openTun: cannot open ") + kTunPath, err, "needs CAP_NET_ADMIN (run as root)");
    ThrowErrno(env, std::string("openTun: open ") + kTunPath, err);
  }
  struct ifreq ifr = {};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (flags & kTunFlagMultiQueue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  if (flags & (kTunFlagVnetHdr | kTunFlagOffload)) ifr.ifr_flags |= IFF_VNET_HDR;
  memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    close(fd);
    const std::string what = "openTun(" + name + "): TUNSETIFF";
    if (err == EPERM || err == EACCES) ThrowErrno(env, what, err, "needs CAP_NET_ADMIN (run as root)");
    if (err == EBUSY) ThrowErrno(env, what, err, "the interface is in use (a single-queue TUN can be opened once) or is not a TUN device");
    if (err == EINVAL) ThrowErrno(env, what, err, "invalid interface name, or flags that differ from the existing interface's (multiQueue must match)");
    ThrowErrno(env, what, err);
  }
  int vnet_size = 0;
  unsigned offloads = 0;
  if (flags & (kTunFlagVnetHdr | kTunFlagOffload)) {
    vnet_size = kVnetHdrSize;
    if (ioctl(fd, TUNSETVNETHDRSZ, &vnet_size) < 0) {
      const int err = errno;
      close(fd);
      ThrowErrno(env, "openTun(" + name + "): TUNSETVNETHDRSZ", err);
    }
    if (flags & kTunFlagOffload) {
      // tuntap.rst "TUNSETOFFLOAD": the kernel may then hand us (and accept from us) packets whose
      // checksum is partial and GSO super-packets of these types. USO needs both USO4 and USO6 and a
      // kernel >= 6.2; on an older one (EINVAL) we keep checksum + TSO.
      offloads = kTunFCsum | kTunFTso4 | kTunFTso6 | kTunFUso4 | kTunFUso6;
      if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
        offloads = kTunFCsum | kTunFTso4 | kTunFTso6;
        if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
          const int err = errno;
          close(fd);
          ThrowErrno(env, "openTun(" + name + "): TUNSETOFFLOAD", err);
        }
      }
    }
  }
  // O_NONBLOCK and O_CLOEXEC were set at open(); FD_CLOEXEC is checked here once more because the
  // fd must never leak into child processes (an inherited TUN fd would keep the device alive).
  const int fdflags = fcntl(fd, F_GETFD);
  if (fdflags >= 0 && !(fdflags & FD_CLOEXEC)) fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC);
  std::string actual(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  return Handle::New(env, fd, actual, vnet_size, offloads);
}

// --- memory on huge pages -----------------------------------------------------------------------
//
// The flow table is a few large typed arrays read at random indices; with 4 KiB pages nearly every
// packet pays a TLB miss (and a page walk that itself misses the cache). Transparent huge pages
// are in "madvise" mode on our machines, and V8 never advises its array buffers, so we map the
// memory ourselves: anonymous, 2 MiB aligned, MADV_HUGEPAGE (madvise(2)), then hand it to JS as an
// external ArrayBuffer that unmaps it when collected. The kernel may still back it with small
// pages (fragmentation, THP off); the memory works either way.

constexpr size_t kHugePageSize = 2u * 1024u * 1024u;

void FreeHugePages(Napi::Env, void* data, size_t* length) {
  munmap(data, *length);
  delete length;
}

// allocHugePages(bytes) -> ArrayBuffer (zero-filled, length rounded up to 2 MiB).
Napi::Value AllocHugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "allocHugePages(bytes): bytes must be a number");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested > 0) || requested > 64.0 * 1024 * 1024 * 1024) throw Napi::RangeError::New(env, "allocHugePages(bytes): bytes must be in 1..64 GiB");
  const size_t length = (static_cast<size_t>(requested) + kHugePageSize - 1) / kHugePageSize * kHugePageSize;
  // Over-map by one huge page, then trim both ends so the region starts on a 2 MiB boundary.
  void* raw = mmap(nullptr, length + kHugePageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    throw Napi::Error::New(env, std::string("allocHugePages: mmap failed: ") + strerror(errno));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePageSize - 1) & ~(static_cast<uintptr_t>(kHugePageSize) - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + length + kHugePageSize;
  if (end > aligned + length) munmap(reinterpret_cast<void*>(aligned + length), end - (aligned + length));
  void* data = reinterpret_cast<void*>(aligned);
  madvise(data, length, MADV_HUGEPAGE);  // advisory: failure just means small pages
  return Napi::ArrayBuffer::New(env, data, length, FreeHugePages, new size_t(length));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Handle::Init(env, exports);
  InitEsp(env, exports);  // esp.cc: batched ESP crypto
  InitWireGuard(env, exports);  // wireguard.cc: batched WireGuard crypto
  exports.Set("allocHugePages", Napi::Function::New(env, AllocHugePages, "allocHugePages"));
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  exports.Set("setBusyPoll", Napi::Function::New(env, SetBusyPoll, "setBusyPoll"));
  exports.Set("busyPollCounters", Napi::Function::New(env, BusyPollCounters, "busyPollCounters"));
  exports.Set("flowCacheEnable", Napi::Function::New(env, FlowCacheEnable, "flowCacheEnable"));
  exports.Set("flowCacheInstall", Napi::Function::New(env, FlowCacheInstall, "flowCacheInstall"));
  exports.Set("flowCacheRemove", Napi::Function::New(env, FlowCacheRemove, "flowCacheRemove"));
  exports.Set("flowCacheFlush", Napi::Function::New(env, FlowCacheFlush, "flowCacheFlush"));
  exports.Set("flowCacheTake", Napi::Function::New(env, FlowCacheTake, "flowCacheTake"));
  exports.Set("flowCacheLookup", Napi::Function::New(env, FlowCacheLookup, "flowCacheLookup"));
  exports.Set("flowCacheFold", Napi::Function::New(env, FlowCacheFold, "flowCacheFold"));
  exports.Set("flowCacheStats", Napi::Function::New(env, FlowCacheStats, "flowCacheStats"));
  exports.Set("TUN_FLAG_MULTI_QUEUE", Napi::Number::New(env, kTunFlagMultiQueue));
  exports.Set("TUN_FLAG_VNET_HDR", Napi::Number::New(env, kTunFlagVnetHdr));
  exports.Set("TUN_FLAG_OFFLOAD", Napi::Number::New(env, kTunFlagOffload));
  return exports;
}

}  // namespace

NODE_API_MODULE(tether_io, Init)
