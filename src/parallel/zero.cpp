#include "parallel/zero.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/elementwise.h"

namespace longctx {

int ZeroShards::by_unit_stage(int zero, int ranks, bool lora) {
  CHECK(zero >= 0 && zero <= 3, "--zero ", zero, ": the stages are 0, 1, 2 and 3");
  CHECK(!(ranks > 1 && lora && zero == 3), "--zero 3 shards the weights a block at a time; with LoRA only ",
        "the small adapters train: use --zero 2");
  return ranks > 1 && !lora && zero >= 2 ? zero : 0;
}

ZeroShards::ZeroShards(Tensor w, Tensor g, std::vector<NamedTensor> tensors, int stage, Comm& comm,
                       Memory& mem)
    : stage_(comm.size() > 1 ? stage : 0),
      comm_(comm),
      mem_(mem),
      n_(w.numel()),
      tensors_(std::move(tensors)),
      w_(w),
      g_(g) {
  // stage 3 across ranks runs by unit (by_unit_stage refuses it for LoRA); on one rank every stage is 0
  CHECK(stage >= 0 && stage <= 3 && stage_ < 3,
        "[zero] a flat vector across ranks is sharded at stages 0-2, not ", stage);
  CHECK(g.numel() == n_, "[zero] ", g.numel(), " gradients for ", n_, " parameters");
  for (const NamedTensor& t : tensors_) offsets_.push_back(static_cast<float*>(t.t.ptr) - w.f32());
  const int P = stage_ == 0 ? 1 : comm.size(), r = stage_ == 0 ? 0 : comm.rank();
  map_ = ShardMap({FlatRange{0, n_}}, P, r);
  ws_ = w.slice0(map_.own_lo(0), map_.own_n(0));  // in place
  gs_ = g.slice0(map_.own_lo(0), map_.own_n(0));
  set_pieces();
}

ZeroShards::ZeroShards(const LlamaConfig& c, ParamSet& whole, int stage, Comm& comm, Memory& mem,
                       bool offload)
    : stage_(stage),
      by_unit_(true),
      offload_(offload),
      comm_(comm),
      mem_(mem),
      n_(whole.flat_size()),
      // at 3 `whole` may be freed after take_weights(), unless offloaded (then it is the shard)
      whole_(stage == 2 || offload ? &whole : nullptr) {
  CHECK(stage == 2 || stage == 3, "[zero] blocks are sharded at stages 2 and 3, not ", stage);
  CHECK(comm.size() > 1 || offload, "[zero] stage ", stage, " by blocks needs more than one rank");
  CHECK(!offload || (stage == 3 && comm.size() == 1 && whole.all().tier == Tier::host),
        "[zero] weights off the device: stage 3 on one rank, the whole weights on the host");
  host_ctx_.backend = Backend::cpu, host_ctx_.mem = &mem;
  for (size_t i = 0; i < whole.specs().size(); i++) {
    // names and shapes only: at stage 3 `whole` may be freed after take_weights()
    tensors_.push_back(
        {whole.specs()[i].name, Tensor(nullptr, whole.specs()[i].shape, DType::F32, Tier::host)});
    offsets_.push_back(whole.offset(i));
  }
  // units: the embedding, each block, the final norm with the LM head (GradStep's UnitHook numbering)
  std::vector<FlatRange> units;
  int64_t largest = 1;
  for (auto [b, e] : param_units(whole)) units.push_back({b, e}), largest = std::max(largest, e - b);
  map_ = ShardMap(std::move(units), comm.size(), comm.rank());
  CHECK(!offload || map_.shard_size() == n_, "[zero] the units of ", map_.shard_size(),
        " elements do not cover the ", n_, " weights");
  const int64_t shard = std::max<int64_t>(map_.shard_size(), 1);
  const Tier st = offload ? Tier::host : Tier::device;
  gshard_ = Buffer(mem, st, Tag::grads, {shard});
  gshard_.zero();
  gs_ = gshard_.t().slice0(0, map_.shard_size());
  if (stage == 3 && offload) {  // one rank: its shard is the whole vector, in place
    ws_ = whole.all().slice0(0, map_.shard_size());
  } else if (stage == 3) {  // at 2 this rank's part is updated in place in the whole weights
    wshard_ = Buffer(mem, Tier::device, Tag::weights, {shard});
    wshard_.zero();
    ws_ = wshard_.t().slice0(0, map_.shard_size());
  }
  if (offload && !mem.host_accessible(Tier::device)) gstage_ = Buffer(mem, Tier::host, Tag::grads, {largest});
  gviews_ = std::make_unique<ParamSet>(c);
  if (stage == 3) wviews_ = std::make_unique<ParamSet>(c);
  wlive_.resize(size_t(map_.units())), glive_.resize(size_t(map_.units()));
  set_pieces();
}

ZeroShards::~ZeroShards() = default;

void ZeroShards::set_pieces() {
  for (size_t i = 0; i < tensors_.size(); i++)
    for (const ShardMap::Piece& p : map_.pieces(offsets_[i], offsets_[i] + tensors_[i].t.numel()))
      pieces_.push_back({p.at, p.whole, p.n, i, tensors_[i].t.ndim() >= 2});
}

void ZeroShards::bind(ParamSet& views, int unit, float* to) {
  const FlatRange& r = map_.range(unit);
  views.bind(r.begin, r.end - r.begin, to, Tier::device);
}

// A unit's whole weights or gradients exist only between begin() and end().
void ZeroShards::begin(int unit, bool weights, bool grads) {
  const int64_t n = std::max<int64_t>(map_.unit_size(unit), 1);
  if (stage_ == 3 && weights) {
    Buffer& b = wlive_[size_t(unit)];
    CHECK(!b.t().defined(), "[zero] unit ", unit, "'s weights gathered twice");
    b = Buffer(mem_, Tier::device, Tag::weights, {n});
    if (offload_)  // from the host (one rank: the shard holds the whole unit)
      mem_.copy(Tier::device, b.f32(), Tier::host, ws_.f32() + map_.shard_at(unit),
                size_t(map_.unit_size(unit)) * 4);
    else
      map_.gather_unit(unit, ws_.f32(), b.f32(), comm_);
    bind(*wviews_, unit, b.f32());
  }
  if (grads) {
    Buffer& b = glive_[size_t(unit)];
    CHECK(!b.t().defined(), "[zero] unit ", unit, "'s gradients begun twice");
    b = Buffer(mem_, Tier::device, Tag::grads, {n});
    b.zero();
    bind(*gviews_, unit, b.f32());
  }
}

void ZeroShards::end(int unit, bool weights, bool grads) {
  if (grads) {
    float* g = glive_[size_t(unit)].f32();
    if (gstage_.t().defined()) {  // GPU memory: through a host copy
      mem_.copy(Tier::host, gstage_.f32(), Tier::device, g, size_t(map_.unit_size(unit)) * 4);
      g = gstage_.f32();
    }
    map_.reduce_unit(unit, g, gs_.f32(), comm_);  // (one part: shard += unit)
    bind(*gviews_, unit, nullptr);
    glive_[size_t(unit)].reset();
  }
  if (stage_ == 3 && weights) {
    bind(*wviews_, unit, nullptr);
    wlive_[size_t(unit)].reset();
  }
}

void ZeroShards::zero_grads() {
  if (by_unit_)
    gshard_.zero();
  else
    mem_.zero(g_.tier, g_.ptr, g_.bytes());
}

void ZeroShards::reduce_grads() {
  if (by_unit_ || comm_.size() == 1) return;  // by unit: reduced during the backward
  if (stage_ == 2)
    comm_.reduce_scatter_sum(g_.f32(), n_);  // only this rank's part is summed
  else
    comm_.all_reduce_sum(g_.f32(), n_);
}

double ZeroShards::grad_sq_norm(Context& ctx) {
  if (stage_ < 2) return sum_squares(g_, ctx);
  double s = gs_.numel() > 0 ? sum_squares(gs_, shard_context(ctx)) : 0.0;
  comm_.all_reduce_sum(&s, 1);
  return s;
}

void ZeroShards::scale_grads(float s, Context& ctx) {
  if (gs_.numel() > 0) scale_inplace(gs_, s, shard_context(ctx));
}

void ZeroShards::take_weights(const ParamSet& whole) {
  if (by_unit_ && stage_ == 3 && ws_.ptr != whole.all().ptr) map_.take(whole.all().f32(), ws_.f32());
}

Tensor ZeroShards::weights_of(const Piece& q) const {
  return by_unit_ && stage_ == 2 ? whole_->all().slice0(q.whole, q.n) : ws_.slice0(q.at, q.n);
}

void ZeroShards::gather(const float* shard, float* whole) { map_.gather(shard, whole, comm_); }

void ZeroShards::gather_weights(float* whole) {
  if (by_unit_ && stage_ == 3) {
    gather(ws_.f32(), whole);
    return;
  }
  const float* from = by_unit_ ? whole_->all().f32() : w_.f32();
  if (whole != from) std::memcpy(whole, from, size_t(n_) * 4);
}

void ZeroShards::gather_grads(float* whole) {
  if (by_unit_ || stage_ == 2) {
    gather(gs_.f32(), whole);
  } else if (whole != g_.f32()) {
    std::memcpy(whole, g_.f32(), size_t(n_) * 4);
  }
}

void ZeroShards::refresh_weights() {
  if (stage_ == 0 || stage_ == 3) return;
  if (!by_unit_) return comm_.all_gather_parts(w_.f32(), n_);
  for (int u = 0; u < map_.units(); u++) {  // every unit is one range of the whole weights: in place
    const FlatRange& r = map_.range(u);
    comm_.all_gather_parts(whole_->all().f32() + r.begin, r.end - r.begin);
  }
}

ZeroOptimizer::ZeroOptimizer(ZeroShards& shards, Memory& mem, MomentsAt at, int64_t slice,
                             const std::string& dir)
    : sh_(shards), mem_(mem) {
  const int64_t n = std::max<int64_t>(shards.g_shard().numel(), 1);
  n_ = n;
  Tier tier = shards.g_shard().tier;  // (by unit: device, or the host when offloaded)
  const bool streamed = at == MomentsAt::host && tier == Tier::device;  // updated through device slices
  slice_ = std::min(std::max<int64_t>(slice, 1), n);
  if (at == MomentsAt::disk || at == MomentsAt::split) {
    // a file of m then v (split: v, and m in host memory); host slices, and device ones when the shards are
    split_ = at == MomentsAt::split;
    file_ = std::make_unique<DiskFile>(dir, (split_ ? 1 : 2) * n * 4, mem, Tag::optim);
    if (split_) {
      m_ = Buffer(mem, Tier::host, Tag::optim, {n});
      m_.zero();
    } else {
      mh_ = Buffer(mem, Tier::host, Tag::optim, {slice_});
    }
    vh_ = Buffer(mem, Tier::host, Tag::optim, {slice_});
    if (tier == Tier::device) {
      ms_ = Buffer(mem, Tier::device, Tag::optim, {slice_});
      vs_ = Buffer(mem, Tier::device, Tag::optim, {slice_});
    }
    return;  // (a new file reads as zeros)
  }
  if (streamed) {
    tier = Tier::host;
    ms_ = Buffer(mem, Tier::device, Tag::optim, {slice_});
    vs_ = Buffer(mem, Tier::device, Tag::optim, {slice_});
  }
  m_ = Buffer(mem, tier, Tag::optim, {n});
  v_ = Buffer(mem, tier, Tag::optim, {n});
  m_.zero(), v_.zero();
}

float* ZeroOptimizer::host_m() const {
  if (file_ && !split_) return static_cast<float*>(const_cast<void*>(file_->mapped()));
  return mem_.host_accessible(m_.t().tier) ? m_.f32() : nullptr;
}
float* ZeroOptimizer::host_v() const {
  if (file_) return static_cast<float*>(const_cast<void*>(file_->mapped())) + v_at(0);
  return mem_.host_accessible(v_.t().tier) ? v_.f32() : nullptr;
}

void ZeroOptimizer::put_moments(int64_t at, int64_t n, const float* m, const float* v) {
  if (file_) {
    if (split_)
      std::memcpy(m_.f32() + at, m, size_t(n) * 4);
    else
      file_->write(at * 4, m, n * 4);
    file_->write(v_at(at) * 4, v, n * 4);
    return;
  }
  mem_.copy(m_.t().tier, m_.f32() + at, Tier::host, m, size_t(n) * 4);
  mem_.copy(v_.t().tier, v_.f32() + at, Tier::host, v, size_t(n) * 4);
}

void ZeroOptimizer::step(AdamWParams p, float weight_decay, Context& device_ctx) {
  Context& ctx = sh_.shard_context(device_ctx);  // offload: AdamW on the host shards, by the CPU
  const Tensor g = sh_.g_shard();
  for (const auto& q : sh_.pieces()) {
    p.weight_decay = q.decay ? weight_decay : 0.f;  // no decay on norms
    if (!ms_.t().defined() && !file_) {             // the moments where the shards are
      adamw_update(sh_.weights_of(q), g.slice0(q.at, q.n), m_.t().slice0(q.at, q.n), v_.t().slice0(q.at, q.n),
                   p, ctx);
      continue;
    }
    // the moments of a slice to where the shards are (from the disk through the host), the update there,
    // and back (elementwise: the same result)
    for (int64_t o = 0; o < q.n; o += slice_) {
      const int64_t len = std::min(slice_, q.n - o), at = q.at + o;
      Tensor m, v;  // the slice at rest: host memory (disk: its host slice)
      if (file_) {
        m = split_ ? m_.t().slice0(at, len) : mh_.t().slice0(0, len), v = vh_.t().slice0(0, len);
        if (!split_) file_->read(at * 4, m.ptr, len * 4);
        file_->read(v_at(at) * 4, v.ptr, len * 4);
      } else {
        m = m_.t().slice0(at, len), v = v_.t().slice0(at, len);
      }
      const bool device = ms_.t().defined();
      const Tensor md = device ? ms_.t().slice0(0, len) : m, vd = device ? vs_.t().slice0(0, len) : v;
      if (device) copy_tensor(md, m, ctx), copy_tensor(vd, v, ctx);
      adamw_update(sh_.weights_of(q).slice0(o, len), g.slice0(at, len), md, vd, p, ctx);
      if (device) copy_tensor(m, md, ctx), copy_tensor(v, vd, ctx);
      if (file_) {
        if (!split_) file_->write(at * 4, m.ptr, len * 4);
        file_->write(v_at(at) * 4, v.ptr, len * 4);
      }
    }
  }
  sh_.refresh_weights();
}

void ZeroOptimizer::gather_state(std::vector<NamedTensor>& m, std::vector<NamedTensor>& v, Context& ctx) {
  const int64_t n = sh_.whole_size();
  // one part in host memory (the weights or the moments off the device): the moments are the whole vector
  // already, viewed in place; else gathered into host scratch
  const bool in_place = sh_.map().parts() == 1 && host_m() && (file_ || m_.t().tier == Tier::host) &&
                        sh_.map().shard_size() == n;
  if (!in_place) {
    if (!mfull_.t().defined()) {
      mfull_ = Buffer(mem_, Tier::host, Tag::optim, {n});
      vfull_ = Buffer(mem_, Tier::host, Tag::optim, {n});
    }
    mfull_.zero(), vfull_.zero();
    if (!host_m()) {  // GPU memory (one rank): the moments are the whole vector
      CHECK(sh_.map().parts() == 1, "[zero] optimizer state in GPU memory is gathered on one rank only");
      copy_tensor(mfull_.t(), m_.t().slice0(0, n), ctx);
      copy_tensor(vfull_.t(), v_.t().slice0(0, n), ctx);
    } else {
      sh_.map().gather(host_m(), mfull_.f32(), sh_.comm());
      sh_.map().gather(host_v(), vfull_.f32(), sh_.comm());
    }
  }
  // (disk: views into the file's mapping, read as the checkpoint is written: no copy in host memory)
  float *mw = in_place ? host_m() : mfull_.f32(), *vw = in_place ? host_v() : vfull_.f32();
  m.clear(), v.clear();
  const auto& ts = sh_.tensors();
  for (size_t i = 0; i < ts.size(); i++) {
    const Shape s = ts[i].t.shape;
    m.push_back({ts[i].name, Tensor(mw + sh_.offsets()[i], s, DType::F32, Tier::host)});
    v.push_back({ts[i].name, Tensor(vw + sh_.offsets()[i], s, DType::F32, Tier::host)});
  }
}

void ZeroOptimizer::load_state(const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v) {
  const size_t nt = sh_.tensors().size();
  CHECK(m.size() == nt && v.size() == nt, "[zero] optimizer state of ", m.size(), " tensors for ", nt);
  for (const auto& q : sh_.pieces()) {
    const int64_t from = q.whole - sh_.offsets()[q.tensor];
    put_moments(q.at, q.n, m[q.tensor].t.f32() + from, v[q.tensor].t.f32() + from);
  }
}

namespace {

// p itself when the host can read it, else a host copy of its n floats kept in `keep`
const float* on_host_view(Memory& mem, Tier tier, const float* p, int64_t n, std::vector<Buffer>& keep) {
  if (mem.host_accessible(tier)) return p;
  keep.emplace_back(mem, Tier::host, Tag::optim, Shape{n});
  mem.copy(Tier::host, keep.back().f32(), tier, p, size_t(n) * 4);
  return keep.back().f32();
}

}  // namespace

void ZeroOptimizer::save_shard(const PieceSink& emit, Context& ctx) {
  (void)ctx;
  // where every rank holds everything, rank r writes its 1/P of the whole vector
  const bool whole = sh_.map().parts() == 1;
  const CommPart mine = whole ? comm_part(sh_.whole_size(), sh_.comm().size(), sh_.comm().rank())
                              : CommPart{0, sh_.whole_size()};
  shard_copies_.clear();
  for (const auto& q : sh_.pieces()) {
    const int64_t a = std::max(q.whole, mine.lo), b = std::min(q.whole + q.n, mine.lo + mine.n);
    if (a >= b) continue;
    const int64_t skip = a - q.whole, n = b - a;
    const Tensor w = sh_.weights_of(q).slice0(skip, n);
    const float *m = host_m(), *v = host_v();  // (disk: the file's mapping)
    emit(q.tensor, a - sh_.offsets()[q.tensor], n, on_host_view(mem_, w.tier, w.f32(), n, shard_copies_),
         m ? m + q.at + skip : on_host_view(mem_, m_.t().tier, m_.f32() + q.at + skip, n, shard_copies_),
         v ? v + q.at + skip : on_host_view(mem_, v_.t().tier, v_.f32() + q.at + skip, n, shard_copies_));
  }
}

void ZeroOptimizer::load_shard(const PieceSource& read) {
  std::vector<float> bm, bv;
  for (const auto& q : sh_.pieces()) {
    const int64_t from = q.whole - sh_.offsets()[q.tensor];
    bm.resize(size_t(q.n)), bv.resize(size_t(q.n));
    read("m.", q.tensor, from, q.n, bm.data());
    read("v.", q.tensor, from, q.n, bv.data());
    put_moments(q.at, q.n, bm.data(), bv.data());
  }
}

}  // namespace longctx
