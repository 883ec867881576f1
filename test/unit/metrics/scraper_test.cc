// The scraper's thread: concurrent scrapes share work, every answer began
// after its request, and gzip is made only when someone asked.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "metrics/scraper.h"

namespace {

using namespace std::chrono_literals;

// A gate the produce step waits at until the test opens it.
struct Gate {
  std::mutex mutex;
  std::condition_variable changed;
  bool open = false;
  int arrived = 0;

  void pass() {
    std::unique_lock lock(mutex);
    ++arrived;
    changed.notify_all();
    changed.wait(lock, [this] { return open; });
  }
  void wait_arrived(int count) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return arrived >= count; });
  }
  void release() {
    const std::scoped_lock lock(mutex);
    open = true;
    changed.notify_all();
  }
};

struct Answers {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::shared_ptr<const kipvs::metrics::Exposition>> got;

  kipvs::metrics::Scraper::Done collect() {
    return [this](std::shared_ptr<const kipvs::metrics::Exposition> exposition) {
      const std::scoped_lock lock(mutex);
      got.push_back(std::move(exposition));
      changed.notify_all();
    };
  }
  void wait_for(std::size_t count) {
    std::unique_lock lock(mutex);
    REQUIRE(changed.wait_for(lock, 10s, [&] { return got.size() >= count; }));
  }
};

}  // namespace

TEST_CASE("scrapes that arrive while one runs are answered together by the next", "[metrics][scraper]") {
  Gate gate;
  std::atomic<int> produced{0};
  kipvs::metrics::Scraper scraper([&] {
    const int n = ++produced;
    gate.pass();
    return "scrape " + std::to_string(n) + "\n";
  });
  Answers answers;
  scraper.scrape(false, answers.collect());
  gate.wait_arrived(1);  // the first scrape runs and is held
  for (int i = 0; i < 5; ++i) scraper.scrape(i == 2, answers.collect());
  gate.release();
  answers.wait_for(6);

  CHECK(produced == 2);
  const std::scoped_lock lock(answers.mutex);
  CHECK(answers.got[0]->text == "scrape 1\n");
  CHECK_FALSE(answers.got[0]->gzipped);
  // The five that came during the first got the second, which began after
  // them, gzipped too because one of them asked.
  for (std::size_t i = 1; i < 6; ++i) {
    CHECK(answers.got[i]->text == "scrape 2\n");
    CHECK(answers.got[i] == answers.got[1]);
  }
  REQUIRE(answers.got[1]->gzipped);
  CHECK(answers.got[1]->gzipped->starts_with("\x1f\x8b"));
}

TEST_CASE("a stopped scraper finishes the scrape in progress and drops the rest", "[metrics][scraper]") {
  Answers answers;
  int produced = 0;
  kipvs::metrics::Scraper* self = nullptr;
  kipvs::metrics::Scraper scraper([&] {
    ++produced;
    // While the first scrape runs: one more request, then stop.
    self->scrape(false, answers.collect());
    self->stop();
    return std::string("up 1\n");
  });
  self = &scraper;
  scraper.scrape(false, answers.collect());
  answers.wait_for(1);
  scraper.stop();
  scraper.scrape(false, answers.collect());  // after stop: dropped
  const std::scoped_lock lock(answers.mutex);
  CHECK(produced == 1);
  REQUIRE(answers.got.size() == 1);
  CHECK(answers.got[0]->text == "up 1\n");
}

TEST_CASE("a scraper left alone after a scrape calls its idle callback once", "[metrics][scraper]") {
  Answers answers;
  std::mutex mutex;
  std::condition_variable changed;
  int idles = 0;
  int produced = 0;
  kipvs::metrics::Scraper scraper(
      [&] {
        const std::scoped_lock lock(mutex);
        ++produced;
        return std::string("up 1\n");
      },
      [&] {
        const std::scoped_lock lock(mutex);
        ++idles;
        changed.notify_all();
      },
      20ms);
  std::this_thread::sleep_for(100ms);
  {
    const std::scoped_lock lock(mutex);
    CHECK(idles == 0);  // nothing scraped yet, nothing to drop
  }
  scraper.scrape(false, answers.collect());
  answers.wait_for(1);
  {
    std::unique_lock lock(mutex);
    REQUIRE(changed.wait_for(lock, 10s, [&] { return idles == 1; }));
  }
  std::this_thread::sleep_for(100ms);
  {
    const std::scoped_lock lock(mutex);
    CHECK(idles == 1);  // once per quiet spell
  }
  scraper.scrape(false, answers.collect());
  answers.wait_for(2);
  std::unique_lock lock(mutex);
  REQUIRE(changed.wait_for(lock, 10s, [&] { return idles == 2; }));
  CHECK(produced == 2);
}

TEST_CASE("a scrape runs at a lower priority than the threads that sync and answer /livez",
          "[metrics][scraper]") {
  errno = 0;
  const int caller_nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  REQUIRE(errno == 0);
  std::atomic<int> scrape_nice{-100};
  kipvs::metrics::Scraper scraper([&] {
    scrape_nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
    return std::string("up 1\n");
  });
  Answers answers;
  scraper.scrape(false, answers.collect());
  answers.wait_for(1);
  // Nice values stop at 19: a test run at 19 cannot see the difference.
  CHECK(scrape_nice == std::min(caller_nice + kipvs::metrics::Scraper::kScrapeNice, 19));
  if (caller_nice < 19) {
    CHECK(scrape_nice > caller_nice);
  } else {
    WARN("run at nice 19: the scrape thread cannot be lowered further");
  }
  // The caller's own thread is left as it was.
  CHECK(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())) == caller_nice);
}
