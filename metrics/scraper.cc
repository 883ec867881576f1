#include "metrics/scraper.h"

#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>

namespace kipvs::metrics {

Scraper::Scraper(Produce produce, Idle idle, std::chrono::milliseconds idle_after)
    : produce_(std::move(produce)),
      idle_(std::move(idle)),
      idle_after_(idle_after),
      thread_([this] { run(); }) {}

Scraper::~Scraper() {
  stop();
}

void Scraper::scrape(bool gzip, Done done) {
  {
    const std::scoped_lock lock(mutex_);
    if (stopping_) return;
    waiting_.push_back(Waiter{gzip, std::move(done)});
  }
  wake_.notify_one();
}

void Scraper::stop() {
  {
    const std::scoped_lock lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void Scraper::run() {
  // Behind the sync and the HTTP threads when the CPUs are busy: a scrape
  // at 10,000 Services is a second of CPU, and /livez must not wait for it
  // (kubelet restarts the pod after three missed probes). Linux gives each
  // thread a nice value of its own; this one's is the agent's plus
  // kScrapeNice.
  const auto self = static_cast<id_t>(gettid());
  errno = 0;
  if (const int nice = getpriority(PRIO_PROCESS, self); errno == 0)
    (void)setpriority(PRIO_PROCESS, self, std::min(nice + kScrapeNice, 19));
  bool scraped_since_idle = false;
  for (;;) {
    std::vector<Waiter> batch;
    {
      std::unique_lock lock(mutex_);
      const auto wanted = [this] { return stopping_ || !waiting_.empty(); };
      if (idle_ && scraped_since_idle) {
        if (!wake_.wait_for(lock, idle_after_, wanted)) {
          lock.unlock();
          idle_();
          scraped_since_idle = false;
          continue;
        }
      } else {
        wake_.wait(lock, wanted);
      }
      if (stopping_) return;
      batch.swap(waiting_);
    }
    scraped_since_idle = true;
    auto exposition = std::make_shared<Exposition>();
    exposition->text = produce_();
    bool any_gzip = false;
    for (const auto& waiter : batch) any_gzip = any_gzip || waiter.gzip;
    if (any_gzip) exposition->gzipped = metrics::gzip(exposition->text);
    const std::shared_ptr<const Exposition> answer = std::move(exposition);
    for (auto& waiter : batch) waiter.done(answer);
  }
}

std::optional<std::string> gzip(std::string_view plain) {
  z_stream stream{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return std::nullopt;
  std::string out(deflateBound(&stream, static_cast<uLong>(plain.size())), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  stream.avail_in = static_cast<uInt>(plain.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

}  // namespace kipvs::metrics
