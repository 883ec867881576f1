#pragma once
// Builds /metrics on a thread of its own. At 10,000 Services one scrape takes
// over a second (a kernel dump of the counters, then the text), which must
// not hold the thread that syncs or the one that answers /livez.
//
// Concurrent scrapes share work: requests that arrive while a scrape runs are
// answered together by the next one, so at most one runs and one waits
// whatever the number of clients (the HTTP server caps those too). Every
// answer began after its request arrived, so no client sees older counters
// than it asked at.
//
// Between scrapes nothing need stay: once no scrape has come for a while,
// the idle callback drops what the producers keep for the next one (a
// snapshot of the kernel's counters, the Service names: megabytes at 10,000
// Services).

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kipvs::metrics {

// One scrape's text and, when a client it answers accepts gzip, the text
// gzipped (absent if compression failed: the text is sent instead).
struct Exposition {
  std::string text;
  std::optional<std::string> gzipped;
};

class Scraper {
 public:
  // The scraper thread's nice value.
  static constexpr int kScrapeNice = 10;

  // Called on the scraper's thread for each scrape.
  using Produce = std::function<std::string()>;
  using Done = std::function<void(std::shared_ptr<const Exposition>)>;
  // Called on the scraper's thread once no scrape came for idle_after since
  // the last one (once per quiet spell).
  using Idle = std::function<void()>;

  explicit Scraper(Produce produce, Idle idle = {},
                   std::chrono::milliseconds idle_after = std::chrono::seconds{2});
  // Stops; scrapes not yet begun are dropped unanswered.
  ~Scraper();
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  // Calls done on the scraper's thread with a scrape that began after this
  // call. gzip: the client accepts a gzipped body.
  void scrape(bool gzip, Done done);
  // Finishes the scrape in progress and stops; later scrape() calls are
  // dropped. Called by the destructor.
  void stop();

 private:
  struct Waiter {
    bool gzip = false;
    Done done;
  };
  void run();

  Produce produce_;
  Idle idle_;
  std::chrono::milliseconds idle_after_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Waiter> waiting_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

// One gzip member at zlib's fastest level (the exposition text is repetitive
// enough to shrink well even so); nullopt if zlib fails.
[[nodiscard]] std::optional<std::string> gzip(std::string_view plain);

}  // namespace kipvs::metrics
