// The trainer's own native library: the few libtorch calls DJL's PyTorch JNI lacks, on DJL's tensor handles (a
// handle is a heap-allocated torch::Tensor*, as DJL's JNI makes them; results are new ones that DJL's PtNDArray
// takes over and deletes). Java side: dev.finetune.trainer.nativelib.TorchNative. It must be built against the same
// libtorch DJL loads (build.sh). Every entry point turns a C++ exception into a Java RuntimeException: a bad call
// fails the job with a message, it never terminates the JVM.
#include <jni.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>
#include <vector>

#ifdef FINETUNE_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

// Data-parallel training on PyTorch's own c10d: a TCPStore rendezvous and ProcessGroupGloo (CPUs) or
// ProcessGroupNCCL (GPUs). build.sh defines FT_C10D, USE_C10D_GLOO where the gloo headers are there, and
// USE_C10D_NCCL for a CUDA libtorch with NCCL.
#ifdef FT_C10D
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#endif

#define FT_HAS_SDPA (TORCH_VERSION_MAJOR >= 2)
#define FT_HAS_FUSED_ADAMW (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))

namespace {

torch::Tensor& T(jlong handle) { return *reinterpret_cast<torch::Tensor*>(handle); }

jlong Handle(torch::Tensor t) { return reinterpret_cast<jlong>(new torch::Tensor(std::move(t))); }

void Throw(JNIEnv* env, const std::string& what) {
  jclass c = env->FindClass("java/lang/RuntimeException");
  env->ThrowNew(c, ("libtorch: " + what).c_str());
}

template <typename F>
auto Guard(JNIEnv* env, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    Throw(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    Throw(env, e.what());
  }
  return decltype(f())();
}

std::vector<torch::Tensor> Tensors(JNIEnv* env, jlongArray handles) {
  jsize n = env->GetArrayLength(handles);
  std::vector<jlong> h(n);
  env->GetLongArrayRegion(handles, 0, n, h.data());
  std::vector<torch::Tensor> out;
  out.reserve(n);
  for (jlong x : h) out.push_back(T(x));
  return out;
}

torch::ScalarType Type(jint code) {
  switch (code) {
    case 0: return torch::kFloat32;
    case 1: return torch::kBFloat16;
    default: throw std::invalid_argument("unknown dtype code " + std::to_string(code));
  }
}

}  // namespace

#define FT(ret, name) extern "C" JNIEXPORT ret JNICALL Java_dev_finetune_trainer_nativelib_TorchNative_##name

// "MAJOR.MINOR.PATCH" of the libtorch headers this library was built with.
FT(jstring, torchVersion)(JNIEnv* env, jclass) { return env->NewStringUTF(TORCH_VERSION); }

FT(jboolean, hasAttention)(JNIEnv*, jclass) { return FT_HAS_SDPA ? JNI_TRUE : JNI_FALSE; }

FT(jboolean, hasFusedAdamW)(JNIEnv*, jclass) { return FT_HAS_FUSED_ADAMW ? JNI_TRUE : JNI_FALSE; }

// Compute capability of CUDA device 0 as major * 10 + minor (90 for H100/H200); -1 without CUDA.
FT(jint, cudaCapability)(JNIEnv* env, jclass) {
  return Guard(env, [&]() -> jint {
#ifdef FINETUNE_CUDA
    if (torch::cuda::is_available()) {
      auto* p = at::cuda::getDeviceProperties(0);
      return p->major * 10 + p->minor;
    }
#endif
    return -1;
  });
}

FT(jstring, cudaDeviceName)(JNIEnv* env, jclass) {
  std::string name;
#ifdef FINETUNE_CUDA
  try {
    if (torch::cuda::is_available()) name = at::cuda::getDeviceProperties(0)->name;
  } catch (const std::exception&) {
  }
#endif
  return env->NewStringUTF(name.c_str());
}

// TF32 for fp32 matmuls and convolutions (torch.backends.cuda.matmul.allow_tf32 / cudnn.allow_tf32).
FT(void, allowTf32)(JNIEnv* env, jclass, jboolean on) {
  Guard(env, [&]() -> int {
    at::globalContext().setAllowTF32CuBLAS(on == JNI_TRUE);
    at::globalContext().setAllowTF32CuDNN(on == JNI_TRUE);
    return 0;
  });
}

// A cast that stays on the autograd graph (DJL's toType runs under NoGradGuard and cuts it): gradients of the
// result flow back to the source in its own dtype, as autocast's casts of fp32 master weights do.
FT(jlong, cast)(JNIEnv* env, jclass, jlong x, jint dtype) {
  return Guard(env, [&]() { return Handle(T(x).to(Type(dtype))); });
}

// GPT-2's tanh GELU in one kernel.
FT(jlong, geluTanh)(JNIEnv* env, jclass, jlong x) {
  return Guard(env, [&]() { return Handle(at::gelu(T(x), "tanh")); });
}

// Mean cross-entropy of logits [..., V] against targets [...] (int64), ignoring -100, in fp32 whatever the
// logits' dtype (autocast runs the loss in fp32). A batch with no target gives 0, as the trainer's own loss does.
FT(jlong, crossEntropy)(JNIEnv* env, jclass, jlong logits, jlong targets) {
  return Guard(env, [&]() {
    auto& l = T(logits);
    auto flat = l.reshape({-1, l.size(-1)}).to(torch::kFloat32);
    auto y = T(targets).reshape({-1});
    auto sum = at::cross_entropy_loss(flat, y, {}, at::Reduction::Sum, -100);
    auto count = y.ne(-100).sum().clamp_min(1).to(torch::kFloat32);
    return Handle(sum / count);
  });
}

// Causal scaled-dot-product attention of q, k, v [B, H, T, hd] (flash or memory-efficient kernels on GPUs: the
// T x T matrix is never materialised). PyTorch 2.0 and later.
FT(jlong, causalAttention)(JNIEnv* env, jclass, jlong q, jlong k, jlong v, jdouble dropout) {
  return Guard(env, [&]() -> jlong {
#if FT_HAS_SDPA
    return Handle(at::scaled_dot_product_attention(T(q), T(k), T(v), {}, dropout, true));
#else
    throw std::runtime_error("scaled_dot_product_attention needs libtorch 2.0 or later, this is " TORCH_VERSION);
#endif
  });
}

// PyTorch's fused AdamW (torch.optim.AdamW(fused=True)) over all parameters at once, in place: decoupled weight
// decay, bias correction at step `step` (the step being taken, from 1). PyTorch 2.1 and later.
FT(void, fusedAdamW)(JNIEnv* env, jclass, jlongArray params, jlongArray grads, jlongArray m, jlongArray v,
                     jdouble lr, jdouble beta1, jdouble beta2, jdouble weightDecay, jdouble eps, jlong step) {
  Guard(env, [&]() -> int {
#if FT_HAS_FUSED_ADAMW
    torch::NoGradGuard noGrad;
    auto p = Tensors(env, params);
    auto g = Tensors(env, grads);
    auto mt = Tensors(env, m);
    auto vt = Tensors(env, v);
    if (p.empty()) return 0;
    auto s = torch::full({}, static_cast<double>(step), torch::dtype(torch::kFloat32).device(p[0].device()));
    std::vector<torch::Tensor> steps(p.size(), s);
    at::_fused_adamw_(p, g, mt, vt, {}, steps, lr, beta1, beta2, weightDecay, eps, false, false);
    return 0;
#else
    throw std::runtime_error("_fused_adamw_ needs libtorch 2.1 or later, this is " TORCH_VERSION);
#endif
  });
}

// ---- c10d: one process group per process, as torch.distributed's default group ----------------------------------

#ifdef FT_C10D
namespace {

c10::intrusive_ptr<c10d::Store> distStore;
#ifdef USE_C10D_GLOO
c10::intrusive_ptr<c10d::ProcessGroupGloo> glooGroup;
#endif
#ifdef USE_C10D_NCCL
c10::intrusive_ptr<c10d::ProcessGroupNCCL> ncclGroup;
#endif

// Runs f on the process group this process joined.
template <typename F>
void WithGroup(F f) {
#ifdef USE_C10D_NCCL
  if (ncclGroup) return f(*ncclGroup);
#endif
#ifdef USE_C10D_GLOO
  if (glooGroup) return f(*glooGroup);
#endif
  throw std::runtime_error("no process group: distInit was not called");
}

// Flattens the tensors into buckets of at most capBytes (one dtype and device each), starts `op` on every bucket
// before waiting for any (communication of one bucket overlaps the flattening of the next), then copies the results
// back in place. `op` takes a one-tensor vector and returns the c10d work.
template <typename G, typename Op>
void Bucketed(G& group, std::vector<torch::Tensor>& ts, int64_t capBytes, Op op) {
  torch::NoGradGuard noGrad;
  std::vector<std::vector<size_t>> buckets;
  for (size_t i = 0; i < ts.size();) {
    std::vector<size_t> b{i};
    int64_t bytes = ts[i].numel() * ts[i].element_size();
    for (++i; i < ts.size() && ts[i].scalar_type() == ts[b[0]].scalar_type() && ts[i].device() == ts[b[0]].device()
         && bytes + ts[i].numel() * ts[i].element_size() <= capBytes; ++i) {
      b.push_back(i);
      bytes += ts[i].numel() * ts[i].element_size();
    }
    buckets.push_back(std::move(b));
  }
  std::deque<std::vector<torch::Tensor>> flats;  // a deque: the works keep references to these vectors
  std::vector<decltype(op(group, std::declval<std::vector<torch::Tensor>&>()))> works;
  for (auto& b : buckets) {
    std::vector<torch::Tensor> parts;
    for (size_t j : b) parts.push_back(ts[j].reshape({-1}));
    flats.push_back({torch::cat(parts)});
    works.push_back(op(group, flats.back()));
  }
  for (size_t k = 0; k < buckets.size(); ++k) {
    works[k]->wait();
    int64_t offset = 0;
    auto flat = flats[k][0].scalar_type() == ts[buckets[k][0]].scalar_type() ? flats[k][0]
        : flats[k][0].view(ts[buckets[k][0]].scalar_type());  // the bits back in their dtype
    for (size_t j : buckets[k]) {
      int64_t n = ts[j].numel();
      ts[j].copy_(flat.narrow(0, offset, n).view_as(ts[j]));
      offset += n;
    }
  }
}

// Gradient all-reduce that overlaps the backward pass, as DDP's Reducer schedules it. The trainable parameters are
// cut into buckets in reverse order (the order the backward pass produces their gradients); a post-hook on each
// parameter's AccumulateGrad node marks it ready once its gradient is accumulated, and a bucket whose last parameter
// is ready is flattened and its all-reduce started while the backward pass goes on. Buckets start in index order
// only (a ready bucket waits for the ones before it), so every rank issues the same collectives in the same order,
// as c10d requires. Only an armed backward pass (the last micro-batch of an optimizer step; DDP's no_sync for the
// others) starts anything.
struct GradSync {
  std::vector<torch::Tensor> params;
  // Held so the nodes, and with them the hooks, live across steps: a parameter keeps only a weak reference.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> bucketOf;
  std::mutex mu;
  bool armed = false;
  std::vector<size_t> pending;
  std::vector<char> seen;  // per parameter: its gradient is complete in this armed pass
  size_t next = 0;  // the first bucket not started
  std::vector<std::vector<torch::Tensor>> flats;  // per bucket; empty until its all-reduce starts
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  int startedInBackward = 0;
  std::string error;  // a hook must not throw into the autograd engine: finish() rethrows it

  // Flattens bucket b's gradients (zeros for a parameter that got none) and starts their all-reduce. Holds mu.
  void start(size_t b) {
    torch::NoGradGuard noGrad;
    std::vector<torch::Tensor> parts;
    for (size_t j : buckets[b]) {
      const auto& g = params[j].grad();
      parts.push_back(g.defined() ? g.reshape({-1}) : torch::zeros({params[j].numel()}, params[j].options()));
    }
    flats[b] = {torch::cat(parts)};
    WithGroup([&](auto& g) { works[b] = g.allreduce(flats[b]); });
  }
};

std::shared_ptr<GradSync> gradSync;

struct GradReadyHook : torch::autograd::FunctionPostHook {
  std::weak_ptr<GradSync> sync;  // weak: the sync holds the node that holds this hook
  size_t index;
  GradReadyHook(std::weak_ptr<GradSync> s, size_t i) : sync(std::move(s)), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    auto s = sync.lock();
    if (!s) return outputs;
    std::lock_guard<std::mutex> lock(s->mu);
    size_t b = s->bucketOf[index];
    if (!s->armed || !s->error.empty()) return outputs;
    if (s->seen[index]) {  // a second backward pass in one step: its bucket may have gone already
      s->error = "gradient sync: parameter " + std::to_string(index) + " received a gradient twice in one armed step";
      return outputs;
    }
    s->seen[index] = 1;
    --s->pending[b];
    try {
      while (s->next < s->buckets.size() && s->pending[s->next] == 0) {
        s->start(s->next++);
        s->startedInBackward++;
      }
    } catch (const std::exception& e) {
      s->error = e.what();
    }
    return outputs;
  }
};

// The sync for these parameters: the current one when it has the same tensors, else a new one with its hooks.
std::shared_ptr<GradSync> SyncFor(const std::vector<torch::Tensor>& params, int64_t capBytes) {
  if (gradSync && gradSync->params.size() == params.size()) {
    bool same = true;
    for (size_t i = 0; i < params.size() && same; ++i) same = gradSync->params[i].is_same(params[i]);
    if (same) return gradSync;
  }
  auto s = std::make_shared<GradSync>();
  s->params = params;
  s->bucketOf.resize(params.size());
  for (size_t n = params.size(); n > 0;) {
    std::vector<size_t> b{--n};
    int64_t bytes = params[n].numel() * params[n].element_size();
    while (n > 0 && params[n - 1].scalar_type() == params[b[0]].scalar_type() &&
           params[n - 1].device() == params[b[0]].device() &&
           bytes + params[n - 1].numel() * params[n - 1].element_size() <= capBytes) {
      b.push_back(--n);
      bytes += params[n].numel() * params[n].element_size();
    }
    for (size_t j : b) s->bucketOf[j] = s->buckets.size();
    s->buckets.push_back(std::move(b));
  }
  s->pending.resize(s->buckets.size());
  s->seen.resize(params.size());
  s->flats.resize(s->buckets.size());
  s->works.resize(s->buckets.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad() || !params[i].is_leaf()) {
      throw std::invalid_argument("gradient sync: parameter " + std::to_string(i) + " is not a leaf that requires grad");
    }
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    acc->add_post_hook(std::make_unique<GradReadyHook>(s, i));
    s->accumulators.push_back(std::move(acc));
  }
  gradSync = s;
  return s;
}

}  // namespace
#endif

// Whether this library was built with c10d and a backend (Gloo or NCCL).
FT(jboolean, hasDistributed)(JNIEnv*, jclass) {
#if defined(FT_C10D) && (defined(USE_C10D_GLOO) || defined(USE_C10D_NCCL))
  return JNI_TRUE;
#else
  return JNI_FALSE;
#endif
}

// Whether it has ProcessGroupGloo (CPU tensors; CUDA tensors through the host).
FT(jboolean, hasGloo)(JNIEnv*, jclass) {
#if defined(FT_C10D) && defined(USE_C10D_GLOO)
  return JNI_TRUE;
#else
  return JNI_FALSE;
#endif
}

// Whether it has ProcessGroupNCCL (a CUDA libtorch built with NCCL).
FT(jboolean, hasNccl)(JNIEnv*, jclass) {
#if defined(FT_C10D) && defined(USE_C10D_NCCL)
  return JNI_TRUE;
#else
  return JNI_FALSE;
#endif
}

// Joins the group: rank 0 serves the TCPStore at host:port and waits for the others, as torchrun's env:// does.
// Every collective fails after timeoutMs; a peer that dies fails them at once (its sockets close).
FT(void, distInit)(JNIEnv* env, jclass, jstring backend, jstring host, jint port, jint rank, jint size, jlong timeoutMs) {
  Guard(env, [&]() -> int {
#ifdef FT_C10D
    const char* b = env->GetStringUTFChars(backend, nullptr);
    const char* h = env->GetStringUTFChars(host, nullptr);
    std::string be(b), hostname(h);
    env->ReleaseStringUTFChars(backend, b);
    env->ReleaseStringUTFChars(host, h);
    auto timeout = std::chrono::milliseconds(timeoutMs);
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = static_cast<std::size_t>(size);
    o.waitWorkers = true;
    o.timeout = timeout;
    distStore = c10::make_intrusive<c10d::TCPStore>(hostname, o);
    if (be == "nccl") {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      ncclGroup = c10::make_intrusive<c10d::ProcessGroupNCCL>(distStore, rank, size, opts);
      return 0;
#else
      throw std::runtime_error("this native library has no NCCL (built without a CUDA libtorch with NCCL)");
#endif
    }
#ifdef USE_C10D_GLOO
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    opts->devices.push_back(ifname != nullptr && *ifname != 0
                                ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                : c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    glooGroup = c10::make_intrusive<c10d::ProcessGroupGloo>(distStore, rank, size, opts);
    return 0;
#else
    throw std::runtime_error("this native library has no Gloo (built without the gloo headers)");
#endif
#else
    throw std::runtime_error("this native library was built without c10d");
#endif
  });
}

// Sums the tensors over all ranks, in place (gradients: every rank ends with the same sum).
FT(void, distAllReduce)(JNIEnv* env, jclass, jlongArray handles, jlong bucketBytes) {
  Guard(env, [&]() -> int {
#ifdef FT_C10D
    auto ts = Tensors(env, handles);
    WithGroup([&](auto& g) {
      Bucketed(g, ts, bucketBytes, [](auto& group, std::vector<torch::Tensor>& one) { return group.allreduce(one); });
    });
#endif
    return 0;
  });
}

// Arms the gradient all-reduce of the next backward pass over these parameters (the trainable ones, in model order):
// buckets start as the backward pass fills them. Returns the number of buckets.
FT(jint, distGradSyncArm)(JNIEnv* env, jclass, jlongArray handles, jlong bucketBytes) {
  return Guard(env, [&]() -> jint {
#ifdef FT_C10D
    auto s = SyncFor(Tensors(env, handles), bucketBytes);
    std::lock_guard<std::mutex> lock(s->mu);
    for (size_t b = 0; b < s->buckets.size(); ++b) {
      s->pending[b] = s->buckets[b].size();
      s->flats[b].clear();
      s->works[b].reset();
    }
    std::fill(s->seen.begin(), s->seen.end(), 0);
    s->next = 0;
    s->startedInBackward = 0;
    s->error.clear();
    s->armed = true;
    return static_cast<jint>(s->buckets.size());
#else
    return 0;
#endif
  });
}

// Ends the armed gradient all-reduce: starts the buckets the backward pass did not fill, waits for every bucket and
// writes the sums back into the gradients. Returns how many buckets had started during the backward pass.
FT(jint, distGradSyncFinish)(JNIEnv* env, jclass) {
  return Guard(env, [&]() -> jint {
#ifdef FT_C10D
    auto s = gradSync;
    if (!s) throw std::runtime_error("gradient sync: not armed");
    std::lock_guard<std::mutex> lock(s->mu);
    s->armed = false;
    if (!s->error.empty()) throw std::runtime_error(s->error);
    torch::NoGradGuard noGrad;
    while (s->next < s->buckets.size()) s->start(s->next++);
    for (size_t b = 0; b < s->buckets.size(); ++b) {
      s->works[b]->wait();
      int64_t offset = 0;
      for (size_t j : s->buckets[b]) {
        auto& p = s->params[j];
        auto sum = s->flats[b][0].narrow(0, offset, p.numel()).view_as(p);
        if (p.grad().defined()) {
          p.mutable_grad().copy_(sum);
        } else {
          p.mutable_grad() = sum.clone();
        }
        offset += p.numel();
      }
      s->flats[b].clear();
      s->works[b].reset();
    }
    return static_cast<jint>(s->startedInBackward);
#else
    return 0;
#endif
  });
}

// Overwrites the tensors on every rank with rank `root`'s, in place.
FT(void, distBroadcast)(JNIEnv* env, jclass, jlongArray handles, jint root, jlong bucketBytes) {
  Guard(env, [&]() -> int {
#ifdef FT_C10D
    auto ts = Tensors(env, handles);
    WithGroup([&](auto& g) {
      Bucketed(g, ts, bucketBytes, [root](auto& group, std::vector<torch::Tensor>& one) {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        // a broadcast copies bits: bf16 (a frozen LoRA base) travels as bytes; Gloo in libtorch 1.13 has no bf16
        if (one[0].scalar_type() == at::kBFloat16) one[0] = one[0].view(at::kByte);
        return group.broadcast(one, o);
      });
    });
#endif
    return 0;
  });
}

// Leaves the group (a process that exits without this is seen by its peers as a dead rank).
FT(void, distClose)(JNIEnv* env, jclass) {
  Guard(env, [&]() -> int {
#ifdef FT_C10D
    gradSync.reset();
#ifdef USE_C10D_GLOO
    glooGroup.reset();
#endif
#ifdef USE_C10D_NCCL
    ncclGroup.reset();
#endif
    distStore.reset();
#endif
    return 0;
  });
}
