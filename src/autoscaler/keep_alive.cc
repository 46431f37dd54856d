#include "autoscaler/keep_alive.h"

#include <fmt/format.h>

#include <cmath>

#include "config/duration.h"

namespace sluice::autoscaler {

namespace {

constexpr auto kMinute = std::chrono::minutes(1);
constexpr auto kSecond = std::chrono::seconds(1);
// A pause shorter than this is part of a busy spell, not an idle time: the activator's
// first report after a poke subtracts the poke, so one zero second is no evidence.
constexpr auto kMinIdle = std::chrono::seconds(2);

std::string approx(core::Duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 120)
    return fmt::format("~{} s", s);
  return fmt::format("~{} min", (s + 30) / 60);
}

}  // namespace

std::optional<KeepAliveSpec> parse_keep_alive(const std::string& text, std::string* error) {
  KeepAliveSpec spec;
  if (text == "kpa")
    return spec;
  if (text == "histogram") {
    spec.mode = KeepAliveSpec::Mode::Histogram;
    return spec;
  }
  const bool fixed = text.rfind("fixed:", 0) == 0;
  if (fixed || text.rfind("histogram:", 0) == 0) {
    const std::string prefix = fixed ? "fixed:" : "histogram:";
    std::string why;
    const auto d = config::parse_duration(text.substr(prefix.size()), &why);
    if (!d || d->count() <= 0) {
      if (error)
        *error = fmt::format("\"{}\": the keep-alive after {} must be a positive duration{}{}",
                             text, prefix, why.empty() ? "" : ": ", why);
      return std::nullopt;
    }
    spec.mode = fixed ? KeepAliveSpec::Mode::Fixed : KeepAliveSpec::Mode::Histogram;
    (fixed ? spec.fixed : spec.fallback) = *d;
    return spec;
  }
  if (error)
    *error = fmt::format(
        "\"{}\": one of kpa, fixed:DURATION (e.g. fixed:10m), histogram, histogram:FALLBACK", text);
  return std::nullopt;
}

void KeepAlive::observe(core::TimePoint now, bool busy) {
  if (!busy || (last_busy_ && now <= *last_busy_))
    return;
  if (last_busy_ && now - (*last_busy_ + kSecond) >= kMinIdle) {
    // The end of an idle time: into its 1-minute bin (the first bin holds 0-1 min).
    const auto idle = now - (*last_busy_ + kSecond);
    const auto bin = static_cast<size_t>(idle / kMinute);
    if (bin < bins_.size())
      ++bins_[bin];
    else
      ++beyond_;
    ++samples_;
    summarize();
  }
  last_busy_ = now;
}

bool KeepAlive::idle(core::TimePoint now) const {
  return !last_busy_ || now - (*last_busy_ + kSecond) >= kMinIdle;
}

void KeepAlive::summarize() {
  head_ = percentile(kHead);
  tail_ = percentile(kTail);
  representative_ = false;
  if (samples_ - beyond_ < kMinSamples || beyond_ * 2 > samples_)
    return;
  double sum = 0, sq = 0;
  for (uint32_t c : bins_) {
    sum += c;
    sq += static_cast<double>(c) * c;
  }
  const double mean = sum / kBins;
  const double sd = std::sqrt(std::max(0.0, sq / kBins - mean * mean));
  representative_ = mean > 0 && sd / mean >= kMinCv;
}

int KeepAlive::percentile(double q) const {
  const size_t in_range = samples_ - beyond_;
  if (in_range == 0)
    return kBins;
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(in_range)));
  size_t seen = 0;
  for (int b = 0; b < kBins; ++b) {
    seen += bins_[static_cast<size_t>(b)];
    if (seen >= std::max<size_t>(rank, 1))
      return b + 1;
  }
  return kBins;
}

KeepAlive::Hold KeepAlive::hold(core::TimePoint now) const {
  using Why = Hold::Why;
  Hold h;
  if (spec_.mode == KeepAliveSpec::Mode::Kpa || !last_busy_)
    return h;
  if (!this->idle(now)) {
    h.replicas = 1;
    h.why = Why::Busy;
    return h;
  }
  const auto idle = now - (*last_busy_ + kSecond);
  if (spec_.mode == KeepAliveSpec::Mode::Fixed) {
    h.replicas = idle < spec_.fixed ? 1 : 0;
    h.why = h.replicas ? Why::Fixed : Why::FixedOver;
    h.length = spec_.fixed;
    return h;
  }
  if (!representative()) {
    h.replicas = idle < spec_.fallback ? 1 : 0;
    h.why = h.replicas ? Why::Fallback : Why::FallbackOver;
    h.length = spec_.fallback;
    h.count = static_cast<int64_t>(samples_);
    return h;
  }
  const int head_min = head_minutes(), tail_min = tail_minutes();
  const auto head =
      std::chrono::duration_cast<core::Duration>(head_min * kMinute * (1.0 - kMargin));
  const auto tail =
      std::chrono::duration_cast<core::Duration>(tail_min * kMinute * (1.0 + kMargin));
  // With a head under a minute, the replica is simply kept (no pre-warm window to use).
  const auto warm_from = head_min <= 1 ? core::Duration::zero() : head - spec_.start_lead;
  h.length = head - idle;
  h.count = tail_min;
  if (idle >= warm_from && idle < tail) {
    h.replicas = 1;
    h.why = idle < head ? Why::PreWarm : Why::Tail;
  } else {
    h.why = idle < warm_from ? Why::Early : Why::PastTail;
  }
  return h;
}

std::string KeepAlive::Hold::reason() const {
  const auto keep_alive = [this] {
    return config::format_duration(std::chrono::duration_cast<config::Millis>(length));
  };
  switch (why) {
    case Why::Unknown:
      return "";
    case Why::Busy:
      return "busy";
    case Why::Fixed:
      return fmt::format("keep-alive {} after the last request", keep_alive());
    case Why::FixedOver:
      return fmt::format("idle for the keep-alive {}", keep_alive());
    case Why::Fallback:
      return fmt::format(
          "keep-alive {}: the idle-time histogram is not representative yet ({} idle times)",
          keep_alive(), count);
    case Why::FallbackOver:
      return fmt::format("idle for the fallback keep-alive {}", keep_alive());
    case Why::PreWarm:
      return fmt::format("pre-warm: next request expected in {}", approx(length));
    case Why::Tail:
      return fmt::format("keep-alive: idle times' tail {} min", count);
    case Why::Early:
      return fmt::format("idle: next request expected in {}", approx(length));
    case Why::PastTail:
      return fmt::format("idle past its idle times' tail ({} min)", count);
  }
  return "";
}

}  // namespace sluice::autoscaler
