// metrics/cells.h
//
// Recording primitives for the request path. Each worker thread owns one shard and is
// its only writer, so recording is a relaxed load + store (no lock, no locked RMW);
// the scrape, on another thread, sums the shards with relaxed loads. Counters only go
// up; nothing is reset on scrape. Registration happens at start-up, before traffic.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace sluice::metrics {

// Single-writer increment: no read-modify-write instruction needed.
inline void bump(std::atomic<uint64_t>& cell, uint64_t n = 1) {
  cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void bump(std::atomic<double>& cell, double v) {
  cell.store(cell.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

struct alignas(64) CounterShard {
  std::atomic<uint64_t> value{0};
};

class Counter {
 public:
  explicit Counter(size_t shards) : shards_(shards) {}
  void inc(size_t shard, uint64_t n = 1) { bump(shards_[shard].value, n); }
  uint64_t value() const {
    uint64_t total = 0;
    for (const auto& s : shards_) total += s.value.load(std::memory_order_relaxed);
    return total;
  }

 private:
  std::vector<CounterShard> shards_;
};

// Fixed upper bounds, ascending; the +Inf bucket is implicit.
class Buckets {
 public:
  explicit Buckets(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  size_t size() const { return bounds_.size(); }
  const std::vector<double>& bounds() const { return bounds_; }
  size_t index_of(double v) const {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    return i;  // == size() for +Inf
  }

 private:
  std::vector<double> bounds_;
};

// Knative's latency buckets, in milliseconds (spec §4).
const Buckets& knative_latency_ms_buckets();

struct HistogramSnapshot {
  std::vector<uint64_t> cumulative;  // one per bound, then +Inf
  uint64_t count = 0;
  double sum = 0;
};

class HistogramShard {
 public:
  explicit HistogramShard(size_t n) : counts_(new std::atomic<uint64_t>[n + 1]), n_(n + 1) {
    for (size_t i = 0; i < n_; ++i) counts_[i].store(0, std::memory_order_relaxed);
  }
  void observe(size_t bucket, double v) {
    bump(counts_[bucket]);
    bump(sum_, v);
  }
  void add_to(HistogramSnapshot& snap) const {
    uint64_t running = 0;
    for (size_t i = 0; i < n_; ++i) {
      running += counts_[i].load(std::memory_order_relaxed);
      snap.cumulative[i] += running;
    }
    snap.count += running;
    snap.sum += sum_.load(std::memory_order_relaxed);
  }

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  size_t n_;
  std::atomic<double> sum_{0};
};

class Histogram {
 public:
  Histogram(const Buckets& buckets, size_t shards) : buckets_(buckets) {
    shards_.reserve(shards);
    for (size_t i = 0; i < shards; ++i)
      shards_.push_back(std::make_unique<HistogramShard>(buckets.size()));
  }
  void observe(size_t shard, double v) { shards_[shard]->observe(buckets_.index_of(v), v); }
  HistogramSnapshot snapshot() const {
    HistogramSnapshot snap;
    snap.cumulative.assign(buckets_.size() + 1, 0);
    for (const auto& s : shards_) s->add_to(snap);
    return snap;
  }
  const Buckets& buckets() const { return buckets_; }

 private:
  const Buckets& buckets_;
  std::vector<std::unique_ptr<HistogramShard>> shards_;
};

// Counters and histograms keyed by HTTP status code (100..599), the `response_code`
// label. Per-code storage is created on first use by the shard's writer and published
// with a release store, so the scrape never sees a half-built cell.
class CodeMetrics {
 public:
  static constexpr int kMinCode = 100;
  static constexpr int kCodes = 500;

  CodeMetrics(const Buckets& buckets, size_t shards) : buckets_(buckets), shards_(shards) {}
  ~CodeMetrics() {
    for (auto& s : shards_) {
      for (auto& c : s.cells) delete c.load(std::memory_order_relaxed);
    }
  }
  CodeMetrics(const CodeMetrics&) = delete;
  CodeMetrics& operator=(const CodeMetrics&) = delete;

  void record(size_t shard, int code, double latency) {
    if (code < kMinCode || code >= kMinCode + kCodes)
      code = 500;
    auto& slot = shards_[shard].cells[code - kMinCode];
    Cell* cell = slot.load(std::memory_order_acquire);
    if (cell == nullptr) {
      cell = new Cell(buckets_.size());
      slot.store(cell, std::memory_order_release);
    }
    cell->histogram.observe(buckets_.index_of(latency), latency);
  }

  // Calls fn(code, snapshot) for each code seen so far.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (int i = 0; i < kCodes; ++i) {
      HistogramSnapshot snap;
      bool seen = false;
      for (const auto& s : shards_) {
        const Cell* cell = s.cells[i].load(std::memory_order_acquire);
        if (cell == nullptr)
          continue;
        if (!seen)
          snap.cumulative.assign(buckets_.size() + 1, 0);
        seen = true;
        cell->histogram.add_to(snap);
      }
      if (seen)
        fn(i + kMinCode, snap);
    }
  }
  const Buckets& buckets() const { return buckets_; }

 private:
  struct Cell {
    explicit Cell(size_t n) : histogram(n) {}
    HistogramShard histogram;
  };
  struct Shard {
    std::array<std::atomic<Cell*>, kCodes> cells{};
  };
  const Buckets& buckets_;
  std::vector<Shard> shards_;
};

}  // namespace sluice::metrics
