#pragma once
// List+watch of one kind of object, as client-go's reflector does it, feeding
// an ObjectSink with only real differences:
//   1. a paginated list (limit + continue; one resourceVersion for all pages;
//      the client keeps the connection alive from one page to the next),
//      which replaces the cache (a relist reports only what changed; the
//      first list reports each page as it is decoded);
//   2. a watch from the list's resourceVersion with bookmarks and a random
//      timeoutSeconds; when it ends, a new watch from the last resourceVersion
//      seen (bookmarks included);
//   3. "410 Expired" (HTTP 410 on a list page's continue token, or an ERROR
//      event with code 410 on a watch) or a 504 "too large resource version":
//      relist;
//   4. connection failures, timeouts, 401/403, 429 and 5xx, and a watch
//      that ends within a second: exponential backoff with jitter, then
//      resume (watch from the last resourceVersion, or list when never
//      synced). Relists wait on the same backoff.
// Objects that do not decode are skipped: a log line naming them, and
// ObjectSink::object_skipped (the agent counts it in a metric). A watch frame
// that is skipped whole (not JSON, too large, no type or object) may have
// carried a change that later frames' resourceVersions step over, so it is
// counted the same way (kReasonBadWatchFrame) and the reflector relists.
//
// JSON is the wire format; the seam for a protobuf fast path is the pair
// decode_page() / decode_frame() in reflector.cc plus the traits' decode.
// Runs on the io_context thread; not thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>

#include "k8s/decode.h"
#include "k8s/http_client.h"
#include "k8s/json_stream.h"
#include "k8s/object_cache.h"
#include "k8s/protobuf.h"
#include "k8s/sink.h"

namespace kipvs::k8s {

using Logger = std::function<void(std::string_view)>;

// ObjectSink::object_skipped's reason for a watch frame skipped whole.
inline constexpr std::string_view kReasonBadWatchFrame = "bad_watch_frame";
[[nodiscard]] Logger stderr_logger();

// Exponential backoff with jitter: the n-th delay is
// min(cap, initial * factor^n) * (1 + jitter * random()), capped again.
// client-go's reflector backoff: it starts over at `initial` only when the
// last delay began more than reset_after ago (that long without trouble),
// not on each success, so a server that answers and then fails again at
// once (a persistent 410, a watch that closes) still meets growing delays.
// Pure; random() in [0, 1) and the time are injected so tests are
// deterministic.
class Backoff {
 public:
  struct Params {
    std::chrono::milliseconds initial{800};
    std::chrono::milliseconds cap{30000};
    double factor = 2.0;
    double jitter = 1.0;
    std::chrono::milliseconds reset_after{std::chrono::minutes(2)};
  };
  Backoff(Params params, std::function<double()> random);
  [[nodiscard]] std::chrono::milliseconds next(std::chrono::steady_clock::time_point now);
  void reset() { attempt_ = 0; }
  [[nodiscard]] unsigned attempt() const { return attempt_; }

 private:
  Params params_;
  std::function<double()> random_;
  unsigned attempt_ = 0;
  std::optional<std::chrono::steady_clock::time_point> last_start_;
};

// Default random source for backoff and watch timeouts.
[[nodiscard]] std::function<double()> default_random();

struct ReflectorOptions {
  std::string label_selector;
  std::string field_selector;
  // Where the server rejects field_selector (HTTP 400), drop it and filter
  // on the client with this predicate (over the decoded JSON object).
  std::function<bool(const boost::json::value&)> client_filter;
  std::uint32_t page_size = 500;
  // Ask for Service and EndpointSlice lists in protobuf, as client-go does
  // (kube-proxy's --kube-api-content-type); a server that answers JSON is
  // read as JSON. Watches and the client-side filter stay JSON.
  bool protobuf_lists = true;
  // The memory one list page or one watch frame may take while parsed
  // (parse_memory.h). A page past it is asked for again at half the size, so
  // a list of large objects still goes through; a frame past it is skipped
  // (and the kind relisted, as for any skipped frame).
  std::size_t max_page_memory = std::size_t{64} << 20;
  std::size_t max_frame_memory = JsonStream::kDefaultMaxValueMemory;
  std::chrono::seconds min_watch_timeout{300};  // timeoutSeconds in [min, max)
  std::chrono::seconds max_watch_timeout{600};
  // A watch that asked for bookmarks hears from the API server's watch cache
  // at least once a minute, even when nothing changes. Once a bookmark has
  // come, silence much longer than that is a dead connection (a NAT or load
  // balancer dropped it, the server's host died): the watch is closed and
  // resumed from the last resourceVersion. Watches of a server that sends no
  // bookmarks (a resource it does not cache) are not held to it.
  std::chrono::milliseconds watch_silence_limit{std::chrono::seconds(75)};
  // An object whose DELETED frame shows it left the label selection (moved to
  // another proxy by a label, not deleted) is removed only after
  // handoff_delay, so the proxy it moved to can program it first and no
  // request meets neither. A new ADDED/MODIFIED for it cancels the removal.
  std::function<bool(const boost::json::value&)> moved_away;
  std::chrono::milliseconds handoff_delay{0};
  Backoff::Params backoff;
  std::function<double()> random = default_random();
  Logger log = stderr_logger();
  // Counting hooks for metrics: each watch frame by type (ADDED, MODIFIED,
  // DELETED, BOOKMARK, ERROR), and each completed relist.
  std::function<void(ResourceKind, std::string_view type)> on_watch_event;
  std::function<void(ResourceKind)> on_relist;
  HttpRequestOptions http;
};

// What a reflector has done, for tests, logs and metrics.
struct ReflectorStatus {
  std::uint64_t lists = 0;  // complete lists (all pages)
  std::uint64_t list_pages = 0;
  std::uint64_t gzip_list_pages = 0;      // pages the server sent compressed
  std::uint64_t protobuf_list_pages = 0;  // pages the server sent in protobuf
  std::uint64_t reused_list_pages = 0;    // pages that came on a kept-alive connection
  std::uint64_t relists = 0;              // lists after 410 / too-large RV
  std::uint64_t watches = 0;              // watch requests answered 200
  std::uint64_t events = 0;               // ADDED/MODIFIED/DELETED applied
  std::uint64_t bookmarks = 0;
  std::uint64_t silent_watches = 0;   // watches closed after watch_silence_limit without a frame
  std::uint64_t failures = 0;         // requests that failed (each followed by a backoff)
  std::uint64_t skipped = 0;          // objects or frames that did not decode
  std::uint64_t worker_pages = 0;     // list pages decoded on a worker thread
  std::uint64_t oversized_pages = 0;  // pages refused for max_page_memory (then asked for smaller)
  std::uint32_t page_size = 0;        // the limit pages are asked for with now
  unsigned last_http_status = 0;
  std::string last_error;        // "" once healthy again
  std::string resource_version;  // last seen
  bool synced = false;
  bool field_selector_dropped = false;
};

// The non-typed machinery: requests, paging, frames, backoff.
class ReflectorBase {
 public:
  ReflectorBase(boost::asio::io_context& io, HttpClient& client, std::string path, ResourceKind kind,
                ReflectorOptions options);
  virtual ~ReflectorBase();
  ReflectorBase(const ReflectorBase&) = delete;
  ReflectorBase& operator=(const ReflectorBase&) = delete;

  void start();
  void stop();
  [[nodiscard]] const ReflectorStatus& status() const { return status_; }
  [[nodiscard]] ResourceKind kind() const { return kind_; }

 protected:
  // The typed part: decode, keep the cache, tell the sink.
  // A list page's items, decoded on a worker thread while the next page
  // comes in and is parsed here (the two share the guest's CPUs; decoding
  // is about a third of a list's CPU).
  virtual void stage_page(boost::json::value page) = 0;
  // A protobuf page: its items are views into *body.
  virtual void stage_protobuf_page(std::shared_ptr<const std::string> body,
                                   std::vector<std::string_view> items) = 0;
  // Whether to ask for protobuf lists, and the list kind their envelope names.
  [[nodiscard]] virtual bool wants_protobuf() const = 0;
  [[nodiscard]] virtual std::string_view protobuf_list_kind() const = 0;
  virtual void commit_list() = 0;   // the list is whole: replace the cache
  virtual void discard_list() = 0;  // the list failed part way
  virtual void apply_event(std::string_view type, const boost::json::value& object) = 0;
  virtual void first_sync() = 0;
  virtual void frame_skipped() = 0;  // tell the sink

  bool accepted(const boost::json::value& object) const;  // the client-side filter, when active
  // The same, for a worker thread: nullptr when every object is accepted.
  [[nodiscard]] const std::function<bool(const boost::json::value&)>* active_filter() const;
  void log(const std::string& line) const;
  [[nodiscard]] boost::asio::io_context& io() const { return io_; }
  [[nodiscard]] const ReflectorOptions& options() const { return options_; }
  void count_skip() { ++status_.skipped; }
  void count_worker_page() { ++status_.worker_pages; }
  void count_event() { ++status_.events; }

 private:
  enum class Phase { kIdle, kListing, kWatching, kWaiting };

  std::string target(bool watch, const std::string& continue_token) const;
  void list_page(std::string continue_token);
  void on_list_done(const std::string& continue_token, std::optional<HttpError> error);
  void on_protobuf_page();
  void finish_list(const ListMeta& meta);
  void start_watch();
  void page_over_memory(const std::string& continue_token);
  void on_watch_body(std::string_view bytes);
  void on_watch_done(std::optional<HttpError> error);
  void handle_frame(const boost::json::value& frame);
  void skip_frame(const std::string& why);
  void relist(const std::string& why);
  void retry_later(std::string why, std::optional<std::chrono::seconds> retry_after = std::nullopt);
  void resume_after(std::chrono::milliseconds delay);
  std::string describe_http_error(unsigned status, const std::string& body, const char* verb) const;

  boost::asio::io_context& io_;
  HttpClient& client_;
  std::string path_;
  ResourceKind kind_;
  ReflectorOptions options_;
  Backoff backoff_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<HttpCall> call_;
  Phase phase_ = Phase::kIdle;
  bool stopped_ = true;
  bool use_field_selector_ = true;
  bool expect_bookmarks_ = false;  // this server sends bookmarks: a silent watch is dead
  std::string relist_reason_;      // set mid-watch (an ERROR 410, a skipped frame): relist
  bool relisting_ = false;         // the current list is a relist
  // When the current list's first page was asked for, and its items so far:
  // for the line that reports how long a list took.
  std::chrono::steady_clock::time_point list_started_{};
  std::size_t list_items_ = 0;
  std::size_t list_connections_ = 0;  // new connections its pages needed
  std::string resource_version_;
  unsigned status_code_ = 0;
  std::optional<std::chrono::seconds> retry_after_;
  std::string body_;  // an error response
  // The list page being received, parsed as it arrives.
  std::optional<boost::json::stream_parser> list_parser_;
  // Or, when the server answered protobuf, its bytes (decoded at the end).
  std::shared_ptr<std::string> list_protobuf_;
  bool error_protobuf_ = false;  // the error body in body_ is protobuf
  boost::system::error_code list_parse_error_;
  bool list_over_memory_ = false;  // the page passed max_page_memory
  std::uint32_t page_size_;        // options_.page_size, halved by each oversized page
  std::size_t list_bytes_ = 0;
  JsonStream stream_;
  std::uint64_t watch_frames_ = 0;
  std::chrono::steady_clock::time_point watch_started_;
  ReflectorStatus status_;
};

// Per-kind glue: where the objects live and which sink call they feed.
template <typename T>
struct ResourceTraits;

template <>
struct ResourceTraits<Service> {
  static constexpr ResourceKind kKind = ResourceKind::kService;
  static constexpr std::string_view kPath = "/api/v1/services";
  static auto decode(const boost::json::value& json) { return decode_service(json); }
  static constexpr std::string_view kProtobufListKind = "ServiceList";
  static auto decode_protobuf(std::string_view message) { return decode_service_protobuf(message); }
  static void deliver(ObjectSink& sink, const ObjectKey& key, const Service* now) {
    sink.service_changed(key, now);
  }
};

template <>
struct ResourceTraits<EndpointSlice> {
  static constexpr ResourceKind kKind = ResourceKind::kEndpointSlice;
  static constexpr std::string_view kPath = "/apis/discovery.k8s.io/v1/endpointslices";
  static auto decode(const boost::json::value& json) { return decode_endpoint_slice(json); }
  static constexpr std::string_view kProtobufListKind = "EndpointSliceList";
  static auto decode_protobuf(std::string_view message) { return decode_endpoint_slice_protobuf(message); }
  static void deliver(ObjectSink& sink, const ObjectKey& key, const EndpointSlice* now) {
    sink.endpoint_slice_changed(key, now);
  }
};

template <>
struct ResourceTraits<Node> {
  static constexpr ResourceKind kKind = ResourceKind::kNode;
  static constexpr std::string_view kPath = "/api/v1/nodes";
  static auto decode(const boost::json::value& json) { return decode_node(json); }
  static constexpr std::string_view kProtobufListKind = "";  // one Node, listed as JSON
  static void deliver(ObjectSink& sink, const ObjectKey&, const Node* now) { sink.node_changed(now); }
};

// namespace/name from metadata, leniently (for DELETED of an object that no
// longer decodes); nullopt without a name.
[[nodiscard]] std::optional<ObjectKey> key_from_json(const boost::json::value& object);

// A reflector for one kind, with its cache.
template <typename T>
class Reflector final : public ReflectorBase {
 public:
  using Traits = ResourceTraits<T>;

  Reflector(boost::asio::io_context& io, HttpClient& client, ObjectSink& sink, ReflectorOptions options)
      : ReflectorBase(io, client, std::string(Traits::kPath), Traits::kKind, std::move(options)),
        sink_(sink) {}
  ~Reflector() override { stop(); }

  [[nodiscard]] const ObjectCache<T>& cache() const { return cache_; }

 private:
  std::optional<T> decode_or_skip(const boost::json::value& json) {
    auto decoded = Traits::decode(json);
    if (decoded) return std::move(*decoded);
    skip(decoded.error());
    return std::nullopt;
  }

  void skip(const DecodeError& error) {
    count_skip();
    log("skipping " + to_string(error));
    sink_.object_skipped(Traits::kKind, error.object, error.reason);
  }

  using Decoded = std::vector<decltype(Traits::decode(std::declval<const boost::json::value&>()))>;

  // Pure: runs on a worker thread, touching nothing of the reflector's.
  static Decoded decode_page(const boost::json::value& page,
                             const std::function<bool(const boost::json::value&)>* filter) {
    Decoded decoded;
    const auto* items = page.as_object().if_contains("items");
    if (items == nullptr || !items->is_array()) return decoded;
    decoded.reserve(items->as_array().size());
    for (const auto& item : items->as_array()) {
      if (filter == nullptr || (*filter)(item)) decoded.push_back(Traits::decode(item));
    }
    return decoded;
  }

  void stage_page(boost::json::value page) override {
    collect_page();
    const auto* items = page.as_object().if_contains("items");
    const std::size_t count = items != nullptr && items->is_array() ? items->as_array().size() : 0;
    if (count < kWorkerItems) return stage(decode_page(page, active_filter()));
    auto shared = std::make_shared<const boost::json::value>(std::move(page));
    try {
      decoding_ = std::async(std::launch::async,
                             [shared, filter = active_filter()] { return decode_page(*shared, filter); });
      count_worker_page();
    } catch (const std::system_error&) {
      stage(decode_page(*shared, active_filter()));  // no thread: here, then
    }
  }

  static Decoded decode_protobuf_page(const std::vector<std::string_view>& items) {
    Decoded decoded;
    if constexpr (!Traits::kProtobufListKind.empty()) {
      decoded.reserve(items.size());
      for (const auto item : items) decoded.push_back(Traits::decode_protobuf(item));
    }
    return decoded;
  }

  void stage_protobuf_page(std::shared_ptr<const std::string> body,
                           std::vector<std::string_view> items) override {
    collect_page();
    if (items.size() < kWorkerItems) return stage(decode_protobuf_page(items));
    auto shared = std::make_shared<const std::vector<std::string_view>>(std::move(items));
    try {
      decoding_ = std::async(std::launch::async, [body, shared] { return decode_protobuf_page(*shared); });
      count_worker_page();
    } catch (const std::system_error&) {
      stage(decode_protobuf_page(*shared));
    }
  }

  [[nodiscard]] bool wants_protobuf() const override {
    return !Traits::kProtobufListKind.empty() && options().protobuf_lists && active_filter() == nullptr;
  }
  [[nodiscard]] std::string_view protobuf_list_kind() const override { return Traits::kProtobufListKind; }

  void stage(Decoded decoded) {
    for (auto& object : decoded) {
      if (!object) {
        skip(object.error());
        continue;
      }
      ObjectKey key = key_of(*object);
      if (status().synced) {
        staged_.insert_or_assign(std::move(key), std::move(*object));
        continue;
      }
      // The first list: the cache holds nothing a page could contradict, so
      // each page goes to the sink as it is decoded (the agent can start
      // writing while later pages are on their way), not all at the end.
      first_list_keys_.insert(key);
      if (const T* now = cache_.upsert(std::move(*object))) Traits::deliver(sink_, key, now);
    }
  }

  void collect_page() {
    if (decoding_.valid()) stage(decoding_.get());
  }

  void commit_list() override {
    collect_page();
    // The list is the truth now: an object pending hand-off is either gone
    // from it (removed below) or back in it.
    handoffs_.clear();
    if (!status().synced) {
      // Delivered page by page; what an earlier, abandoned try of this
      // first list delivered and this one lacks is gone.
      std::vector<ObjectKey> gone;
      for (const auto& [key, object] : cache_.objects()) {
        if (!first_list_keys_.contains(key)) gone.push_back(key);
      }
      first_list_keys_.clear();
      for (const auto& key : gone) {
        cache_.erase(key);
        Traits::deliver(sink_, key, nullptr);
      }
      return;
    }
    cache_.replace(std::move(staged_),
                   [this](const ObjectKey& key, const T* now) { Traits::deliver(sink_, key, now); });
    staged_.clear();
  }

  void discard_list() override {
    if (decoding_.valid()) decoding_.wait();  // its results are dropped
    decoding_ = {};
    staged_.clear();
    first_list_keys_.clear();
  }

  void first_sync() override { sink_.synced(Traits::kKind); }

  void frame_skipped() override {
    sink_.object_skipped(Traits::kKind, "a watch frame", std::string(kReasonBadWatchFrame));
  }

  void apply_event(std::string_view type, const boost::json::value& object) override {
    if (type == "DELETED" || !accepted(object)) {
      // A DELETED object needs only its key; one leaving the client-side
      // filter is gone for kipvs too.
      auto key = key_from_json(object);
      if (!key) {
        count_skip();
        log("skipping a " + std::string(type) + " event without metadata.name");
        sink_.object_skipped(Traits::kKind, "?", std::string(kReasonMissingName));
        return;
      }
      count_event();
      if (type == "DELETED" && options().moved_away && options().handoff_delay.count() > 0 &&
          cache_.find(*key) != nullptr && options().moved_away(object)) {
        return hand_off(*key);
      }
      handoffs_.erase(*key);
      if (cache_.erase(*key)) Traits::deliver(sink_, *key, nullptr);
      return;
    }
    auto decoded = decode_or_skip(object);
    if (!decoded) return;
    count_event();
    const ObjectKey key = key_of(*decoded);
    handoffs_.erase(key);
    if (const T* now = cache_.upsert(std::move(*decoded))) Traits::deliver(sink_, key, now);
  }

  void hand_off(const ObjectKey& key) {
    if (handoffs_.contains(key)) return;
    log(key.namespace_ + "/" + key.name + " moved to another proxy; removing it in " +
        std::to_string(options().handoff_delay.count()) + " ms");
    auto timer = std::make_shared<boost::asio::steady_timer>(io(), options().handoff_delay);
    handoffs_.emplace(key, timer);
    timer->async_wait([this, key, timer](const boost::system::error_code& ec) {
      if (ec) return;  // cancelled: it came back, a relist settled it, or the reflector is gone
      const auto pending = handoffs_.find(key);
      if (pending == handoffs_.end() || pending->second.timer != timer) return;
      handoffs_.erase(pending);
      if (cache_.erase(key)) Traits::deliver(sink_, key, nullptr);
    });
  }

  // A removal waiting for its hand-off delay; dropping it cancels it.
  struct PendingRemoval {
    std::shared_ptr<boost::asio::steady_timer> timer;
    explicit PendingRemoval(std::shared_ptr<boost::asio::steady_timer> t) : timer(std::move(t)) {}
    ~PendingRemoval() {
      if (timer) timer->cancel();
    }
    PendingRemoval(PendingRemoval&&) noexcept = default;
    PendingRemoval& operator=(PendingRemoval&&) = delete;
  };

  // A smaller page is not worth a thread.
  static constexpr std::size_t kWorkerItems = 64;

  ObjectSink& sink_;
  ObjectCache<T> cache_;
  std::map<ObjectKey, PendingRemoval> handoffs_;
  typename ObjectCache<T>::Map staged_;
  std::set<ObjectKey> first_list_keys_;  // what the first list has brought so far
  std::future<Decoded> decoding_;        // the last page's items, on a worker thread
};

}  // namespace kipvs::k8s
