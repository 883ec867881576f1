#include "k8s/reflector.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iostream>
#include <random>

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

#include "k8s/parse_memory.h"

namespace kipvs::k8s {
namespace {

constexpr std::size_t kMaxListBytes = 1u << 30;   // a 500-item page is a few MiB
constexpr std::size_t kMaxErrorBody = 64 * 1024;  // a Status is small
// A watch that ends within this time counts as a failure, frames or not
// (client-go: "very short watch"), so a server that closes at once, or after
// one frame, cannot make us spin.
constexpr auto kMinHealthyWatch = std::chrono::seconds(1);

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string_view kind_label(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kService:
      return "services";
    case ResourceKind::kEndpointSlice:
      return "endpointslices";
    case ResourceKind::kNode:
      return "nodes";
  }
  return "objects";
}

std::optional<boost::json::value> parse_json(const std::string& text, boost::json::storage_ptr storage = {}) {
  boost::json::parse_options options;
  options.max_depth = JsonStream::kMaxDepth;
  boost::system::error_code ec;
  auto value = boost::json::parse(text, ec, std::move(storage), options);
  if (ec) return std::nullopt;
  return value;
}

}  // namespace

Logger stderr_logger() {
  return [](std::string_view line) { std::clog << "kipvs k8s: " << line << '\n'; };
}

std::function<double()> default_random() {
  auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
}

Backoff::Backoff(Params params, std::function<double()> random)
    : params_(params), random_(std::move(random)) {}

std::chrono::milliseconds Backoff::next(std::chrono::steady_clock::time_point now) {
  if (last_start_ && now - *last_start_ > params_.reset_after) attempt_ = 0;
  last_start_ = now;
  const double cap = static_cast<double>(params_.cap.count());
  const double base =
      std::min(cap, static_cast<double>(params_.initial.count()) * std::pow(params_.factor, attempt_));
  const double delay = std::min(cap, base * (1.0 + params_.jitter * random_()));
  if (base < cap) ++attempt_;
  return std::chrono::milliseconds(static_cast<std::int64_t>(delay));
}

std::optional<ObjectKey> key_from_json(const boost::json::value& object) {
  const auto* obj = object.if_object();
  if (!obj) return std::nullopt;
  const auto* meta = obj->if_contains("metadata");
  if (!meta || !meta->is_object()) return std::nullopt;
  const auto* name = meta->as_object().if_contains("name");
  if (!name || !name->is_string() || name->as_string().empty()) return std::nullopt;
  ObjectKey key;
  key.name = std::string(name->as_string());
  if (const auto* ns = meta->as_object().if_contains("namespace"); ns && ns->is_string()) {
    key.namespace_ = std::string(ns->as_string());
  }
  return key;
}

ReflectorBase::ReflectorBase(boost::asio::io_context& io, HttpClient& client, std::string path,
                             ResourceKind kind, ReflectorOptions options)
    : io_(io),
      client_(client),
      path_(std::move(path)),
      kind_(kind),
      options_(std::move(options)),
      backoff_(options_.backoff, options_.random),
      timer_(io),
      page_size_(std::max<std::uint32_t>(1, options_.page_size)),
      stream_(JsonStream::kDefaultMaxValueBytes, options_.max_frame_memory) {
  status_.page_size = page_size_;
}

ReflectorBase::~ReflectorBase() = default;

void ReflectorBase::log(const std::string& line) const {
  if (options_.log) options_.log(std::string(kind_label(kind_)) + ": " + line);
}

bool ReflectorBase::accepted(const boost::json::value& object) const {
  const auto* filter = active_filter();
  return filter == nullptr || (*filter)(object);
}

const std::function<bool(const boost::json::value&)>* ReflectorBase::active_filter() const {
  if (use_field_selector_ || !options_.client_filter) return nullptr;
  return &options_.client_filter;
}

void ReflectorBase::start() {
  if (!stopped_) return;
  stopped_ = false;
  list_page("");
}

void ReflectorBase::stop() {
  stopped_ = true;
  phase_ = Phase::kIdle;
  timer_.cancel();
  if (call_) {
    call_->cancel();
    call_.reset();
  }
}

std::string ReflectorBase::target(bool watch, const std::string& continue_token) const {
  std::string query;
  auto add = [&](std::string_view key, std::string_view value) {
    query += query.empty() ? '?' : '&';
    query += key;
    query += '=';
    query += url_encode(value);
  };
  if (!options_.label_selector.empty()) add("labelSelector", options_.label_selector);
  if (!options_.field_selector.empty() && use_field_selector_) add("fieldSelector", options_.field_selector);
  if (watch) {
    add("watch", "true");
    add("allowWatchBookmarks", "true");
    add("resourceVersion", resource_version_);
    const auto span =
        std::max<std::int64_t>(1, (options_.max_watch_timeout - options_.min_watch_timeout).count());
    const auto timeout =
        options_.min_watch_timeout.count() +
        std::min<std::int64_t>(span - 1, static_cast<std::int64_t>(options_.random() * span));
    add("timeoutSeconds", std::to_string(timeout));
  } else {
    // No resourceVersion: the first page is a consistent read, later pages
    // follow the continue token, which pins them to the first one's version.
    add("limit", std::to_string(page_size_));
    if (!continue_token.empty()) add("continue", continue_token);
  }
  return path_ + query;
}

void ReflectorBase::list_page(std::string continue_token) {
  if (stopped_) return;
  phase_ = Phase::kListing;
  if (continue_token.empty()) {
    discard_list();
    list_started_ = std::chrono::steady_clock::now();
    list_items_ = 0;
    list_connections_ = 0;
  }
  body_.clear();
  list_parser_.reset();
  list_protobuf_.reset();
  error_protobuf_ = false;
  list_over_memory_ = false;
  list_bytes_ = 0;
  status_code_ = 0;
  retry_after_.reset();
  HttpHandlers handlers;
  handlers.on_head = [this](const HttpResponseHead& head) {
    status_code_ = head.status;
    retry_after_ = head.retry_after;
    status_.last_http_status = head.status;
    if (head.status != 200) {
      error_protobuf_ = is_protobuf(head.content_type);
      return;
    }
    if (head.content_encoding == "gzip") ++status_.gzip_list_pages;
    if (head.reused_connection) {
      ++status_.reused_list_pages;
    } else {
      ++list_connections_;
    }
    if (is_protobuf(head.content_type)) {
      list_protobuf_ = std::make_shared<std::string>();
      return;
    }
    // A page is parsed as it arrives, into one arena freed with the page:
    // the items are decoded into objects that do not refer to it, and a
    // 2 MB page otherwise costs tens of thousands of small allocations. The
    // arena and the parser's stack share the page's memory cap.
    boost::json::parse_options options;
    options.max_depth = JsonStream::kMaxDepth;
    auto memory = capped_resource(options_.max_page_memory);
    list_parser_.emplace(memory, options);
    list_parser_->reset(parse_arena(std::move(memory)));
  };
  handlers.on_body = [this, continue_token](std::string_view bytes) {
    if (list_protobuf_) {
      // The bytes are the page's memory until its items are decoded.
      list_bytes_ += bytes.size();
      if (list_bytes_ > std::min(options_.max_page_memory, kMaxListBytes))
        return page_over_memory(continue_token);
      list_protobuf_->append(bytes);
      return;
    }
    if (!list_parser_) {
      if (body_.size() < kMaxErrorBody) body_.append(bytes.substr(0, kMaxErrorBody - body_.size()));
      return;
    }
    list_bytes_ += bytes.size();
    if (list_parse_error_ || list_bytes_ > kMaxListBytes) return;
    try {
      list_parser_->write(bytes.data(), bytes.size(), list_parse_error_);
    } catch (const ParseMemoryExceeded&) {
      page_over_memory(continue_token);
    }
  };
  handlers.on_done = [this, continue_token](std::optional<HttpError> error) {
    on_list_done(continue_token, std::move(error));
  };
  HttpRequestOptions http = options_.http;
  if (wants_protobuf()) http.accept = std::string(kProtobufContentType) + ", application/json";
  http.accept_gzip = true;  // a watch stays plain: its frames are small and must not wait in a compressor
  call_ = client_.get(target(false, continue_token), http, std::move(handlers));
}

void ReflectorBase::page_over_memory(const std::string& continue_token) {
  // Cancelling suppresses on_done; the rest of the page is not read.
  call_->cancel();
  call_.reset();
  list_parser_.reset();
  list_protobuf_.reset();
  ++status_.oversized_pages;
  const std::string why = "a list page of " + std::to_string(page_size_) + " needs more than " +
                          memory_text(options_.max_page_memory) + " to parse";
  if (page_size_ == 1) return retry_later(why);
  // The continue token stays valid with another limit: the pages already
  // staged are kept.
  page_size_ /= 2;
  status_.page_size = page_size_;
  log(why + "; asking again for " + std::to_string(page_size_) + " objects per page");
  phase_ = Phase::kWaiting;
  timer_.expires_after(std::chrono::milliseconds(0));
  timer_.async_wait([this, continue_token](const boost::system::error_code& ec) {
    if (!ec && !stopped_) list_page(continue_token);
  });
}

std::string ReflectorBase::describe_http_error(unsigned status, const std::string& body,
                                               const char* verb) const {
  std::string text = "HTTP " + std::to_string(status) + " on " + verb + " " + path_;
  if (error_protobuf_) {
    if (auto st = decode_status_protobuf(body); st && !st->message.empty()) {
      text += ": " + st->message;
      if (!st->reason.empty()) text += " (" + st->reason + ")";
    }
  } else if (auto json = parse_json(body)) {
    if (auto st = decode_status(*json); st && !st->message.empty()) {
      text += ": " + st->message;
      if (!st->reason.empty()) text += " (" + st->reason + ")";
    }
  }
  if (status == 401) text += "; the token was refused: it is re-read from its file before the next try";
  if (status == 403) {
    text += "; RBAC: kipvs needs list and watch on " + std::string(kind_label(kind_)) +
            " (see the kipvs ClusterRole)";
  }
  return text;
}

void ReflectorBase::on_list_done(const std::string& continue_token, std::optional<HttpError> error) {
  call_.reset();
  if (stopped_) return;
  if (error) return retry_later("list failed: " + error->message);
  if (status_code_ == 410 && !continue_token.empty()) {
    // The continue token outlived etcd's compaction: start the list over,
    // after the backoff, as a token that keeps expiring must not loop.
    discard_list();
    const auto delay = backoff_.next(std::chrono::steady_clock::now());
    log("list continue token expired; listing from the start in " + std::to_string(delay.count()) + " ms");
    return resume_after(delay);
  }
  if (status_code_ == 400 && use_field_selector_ && !options_.field_selector.empty() &&
      options_.client_filter) {
    // Older servers reject spec.clusterIP!=None; filter here instead.
    use_field_selector_ = false;
    status_.field_selector_dropped = true;
    log("server refused fieldSelector=" + options_.field_selector + " (" +
        describe_http_error(status_code_, body_, "list") + "); filtering on the client");
    return list_page("");
  }
  if (status_code_ != 200) {
    return retry_later(describe_http_error(status_code_, body_, "list"), retry_after_);
  }
  if (list_protobuf_) return on_protobuf_page();
  std::optional<boost::json::value> json;
  if (list_parser_ && !list_parse_error_ && list_bytes_ <= kMaxListBytes) {
    list_parser_->finish(list_parse_error_);
    if (!list_parse_error_) json = list_parser_->release();
  }
  list_parser_.reset();
  list_parse_error_ = {};
  if (!json || !json->is_object()) return retry_later("list of " + path_ + ": the body is not a JSON object");
  auto meta = decode_list_meta(*json);
  if (!meta) return retry_later("list of " + path_ + ": " + to_string(meta.error()));
  ++status_.list_pages;
  // The next page is asked for first: the server and the network work on it
  // while this one is decoded.
  const bool last_page = meta->continue_token.empty();
  if (!last_page) list_page(meta->continue_token);
  if (const auto* items = json->as_object().if_contains("items"); items && items->is_array()) {
    list_items_ += items->as_array().size();
  }
  stage_page(std::move(*json));
  if (!last_page) return;
  finish_list(*meta);
}

void ReflectorBase::on_protobuf_page() {
  std::shared_ptr<const std::string> body = std::move(list_protobuf_);
  auto page = read_protobuf_list(*body, protobuf_list_kind());
  if (!page) return retry_later("list of " + path_ + ": " + page.error());
  ++status_.list_pages;
  ++status_.protobuf_list_pages;
  const bool last_page = page->meta.continue_token.empty();
  if (!last_page) list_page(page->meta.continue_token);
  list_items_ += page->items.size();
  stage_protobuf_page(body, std::move(page->items));
  if (!last_page) return;
  finish_list(page->meta);
}

void ReflectorBase::finish_list(const ListMeta& meta) {
  body_.shrink_to_fit();
  commit_list();
  log("listed " + std::to_string(list_items_) + " objects" +
      (status_.protobuf_list_pages > 0 ? " (protobuf)" : "") + " at resourceVersion " +
      meta.resource_version + " over " + std::to_string(list_connections_) + " new connection(s) in " +
      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                           list_started_)
                         .count()) +
      " ms");
  resource_version_ = meta.resource_version;
  status_.resource_version = resource_version_;
  ++status_.lists;
  if (relisting_) {
    ++status_.relists;
    if (options_.on_relist) options_.on_relist(kind_);
  }
  relisting_ = false;
  status_.last_error.clear();
  if (!status_.synced) {
    status_.synced = true;
    first_sync();
  }
  start_watch();
}

void ReflectorBase::start_watch() {
  if (stopped_) return;
  phase_ = Phase::kWatching;
  (void)stream_.finish();
  body_.clear();
  status_code_ = 0;
  retry_after_.reset();
  relist_reason_.clear();
  watch_frames_ = 0;
  watch_started_ = std::chrono::steady_clock::now();
  HttpHandlers handlers;
  handlers.on_head = [this](const HttpResponseHead& head) {
    status_code_ = head.status;
    retry_after_ = head.retry_after;
    status_.last_http_status = head.status;
    if (head.status == 200) ++status_.watches;
  };
  handlers.on_body = [this](std::string_view bytes) { on_watch_body(bytes); };
  handlers.on_done = [this](std::optional<HttpError> error) { on_watch_done(std::move(error)); };
  HttpRequestOptions http = options_.http;
  http.keep_alive = false;  // a watch's connection is closed when it ends
  // Only a server that has sent bookmarks is held to the silence limit: one
  // that sends none (a resource the API server does not cache, whose watch
  // reads etcd) is quiet for as long as nothing changes. Its dead connections
  // are found by TCP keepalive, and it must end the watch by timeoutSeconds.
  http.idle_timeout = expect_bookmarks_
                          ? options_.watch_silence_limit
                          : std::chrono::milliseconds(options_.max_watch_timeout) + std::chrono::seconds(30);
  call_ = client_.get(target(true, ""), http, std::move(handlers));
}

void ReflectorBase::on_watch_body(std::string_view bytes) {
  if (status_code_ != 200) {
    if (body_.size() < kMaxErrorBody) body_.append(bytes.substr(0, kMaxErrorBody - body_.size()));
    return;
  }
  stream_.feed(bytes);
  while (!stopped_ && relist_reason_.empty()) {
    auto next = stream_.next();
    if (!next) {
      skip_frame("a malformed watch frame (" + next.error().message + "): " + next.error().excerpt);
      break;
    }
    if (!*next) break;
    handle_frame(**next);
  }
  if (!relist_reason_.empty() && call_) {
    // Cancelling suppresses on_done: go on from here.
    call_->cancel();
    call_.reset();
    relist(relist_reason_);
  }
}

void ReflectorBase::skip_frame(const std::string& why) {
  // Frames after it would move the resourceVersion past whatever change it
  // carried, losing that change for good: only a relist recovers it.
  count_skip();
  log("skipping " + why);
  frame_skipped();
  relist_reason_ = "a watch frame was skipped";
}

void ReflectorBase::handle_frame(const boost::json::value& frame) {
  ++watch_frames_;
  const auto* obj = frame.if_object();
  const auto* type = obj ? obj->if_contains("type") : nullptr;
  const auto* object = obj ? obj->if_contains("object") : nullptr;
  if (!type || !type->is_string() || !object) return skip_frame("a watch frame without type/object");
  const std::string_view kind = type->as_string();
  if (kind == "ADDED" || kind == "MODIFIED" || kind == "DELETED" || kind == "BOOKMARK" || kind == "ERROR") {
    if (options_.on_watch_event) options_.on_watch_event(kind_, kind);
  }
  if (kind == "ERROR") {
    auto st = decode_status(*object);
    const std::int32_t code = st ? st->code : 0;
    // 410 Expired / Gone: the resourceVersion was compacted away. A 504 from
    // a server behind us on "too large resource version" is the same remedy.
    if (code == 410 || code == 504) {
      relist_reason_ = "the watch said " + std::to_string(code) + (st ? " " + st->reason : std::string());
      return;
    }
    log("watch ERROR event: " +
        (st ? st->message + " (" + std::to_string(code) + ")" : std::string("undecodable")));
    status_.last_error = "watch ERROR event " + std::to_string(code);
    return;
  }
  if (auto rv = resource_version_of(*object)) {
    resource_version_ = std::move(*rv);
    status_.resource_version = resource_version_;
  }
  status_.last_error.clear();
  if (kind == "BOOKMARK") {
    ++status_.bookmarks;
    expect_bookmarks_ = true;
    return;
  }
  if (kind == "ADDED" || kind == "MODIFIED" || kind == "DELETED") {
    apply_event(kind, *object);
    return;
  }
  log("ignoring a watch frame of type " + std::string(kind));
}

void ReflectorBase::on_watch_done(std::optional<HttpError> error) {
  call_.reset();
  if (stopped_) return;
  if (status_code_ == 200) {
    auto last = stream_.finish();
    if (!last) {
      count_skip();
      log("watch stream cut inside a frame (" + last.error().message + "); resuming from " +
          resource_version_);
    } else if (*last) {
      handle_frame(**last);
    }
    if (!relist_reason_.empty()) return relist(relist_reason_);
    if (error && error->kind == HttpError::Kind::kTimeout) {
      ++status_.silent_watches;
      // Until a bookmark comes again: a server that stopped sending them
      // (restarted without its watch cache) must not lose every watch.
      expect_bookmarks_ = false;
      return retry_later("watch silent for " + std::to_string(options_.watch_silence_limit.count()) +
                         " ms (no event, no bookmark): taking the connection for dead, resuming from " +
                         resource_version_);
    }
    if (error) return retry_later("watch failed: " + error->message);
    if (std::chrono::steady_clock::now() - watch_started_ < kMinHealthyWatch) {
      return retry_later("watch ended within " + std::to_string(kMinHealthyWatch.count()) + " s after " +
                         std::to_string(watch_frames_) + " frame(s)");
    }
    return start_watch();  // a normal end (timeoutSeconds): resume
  }
  if (error) return retry_later("watch failed: " + error->message);
  if (status_code_ == 410) return relist("the watch answered HTTP 410");
  if (status_code_ == 400 && use_field_selector_ && !options_.field_selector.empty() &&
      options_.client_filter) {
    use_field_selector_ = false;
    status_.field_selector_dropped = true;
    log("server refused the field selector on watch; relisting with client-side filtering");
    return relist("field selector refused");
  }
  retry_later(describe_http_error(status_code_, body_, "watch"), retry_after_);
}

void ReflectorBase::relist(const std::string& why) {
  // Not a failure, but client-go backs off before a relist too: a 410 that
  // persists must not make every node list everything back to back.
  relisting_ = true;
  const auto delay = backoff_.next(std::chrono::steady_clock::now());
  log(why + "; relisting (last resourceVersion " + resource_version_ + ") in " +
      std::to_string(delay.count()) + " ms");
  resume_after(delay);
}

void ReflectorBase::retry_later(std::string why, std::optional<std::chrono::seconds> retry_after) {
  ++status_.failures;
  status_.last_error = why;
  discard_list();
  auto delay = backoff_.next(std::chrono::steady_clock::now());
  // The server's Retry-After is honoured up to the backoff's cap (30 s by
  // default, client-go's reflector maximum between attempts): an hour-long
  // one would park this kind's updates for that hour.
  if (retry_after) {
    delay = std::max(delay, std::min<std::chrono::milliseconds>(*retry_after, options_.backoff.cap));
  }
  log(why + "; retrying in " + std::to_string(delay.count()) + " ms");
  resume_after(delay);
}

void ReflectorBase::resume_after(std::chrono::milliseconds delay) {
  phase_ = Phase::kWaiting;
  timer_.expires_after(delay);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    // Resume the watch when a list has completed; else list again.
    if (status_.synced && !relisting_) {
      start_watch();
    } else {
      list_page("");
    }
  });
}

}  // namespace kipvs::k8s
