#pragma once
// The static source: Services, EndpointSlices (and this node's Node) read from
// YAML or JSON files in one directory instead of the API server, feeding the
// same ObjectSink. Used by `kipvs render`, the demo, and by operators who run
// kipvs as a declarative IPVS manager without a cluster.
//
// Files: every regular file (or symlink to one) directly in the directory
// whose name ends in .yaml, .yml or .json and does not start with "." (editor
// and lock files), read in name order; subdirectories are not descended
// (a ConfigMap volume's "..data" links work, as its files are symlinks).
// A YAML file may hold several documents separated by "---"; a JSON file
// holds one or more JSON values one after the other. A document is one
// object, a `kind: List` with `items` (each with its kind), or a typed list
// such as `kind: ServiceList` (what the API returns; items need no kind).
// Objects without a namespace go to "default", as with kubectl.
//
// YAML scalars are typed as YAML 1.2's core schema types them: a plain
// (unquoted) 80 is an integer, true/false a boolean, null/~/empty a null, and
// anything quoted, a block scalar or !!str a string. So `port: "80"` is
// refused (the API wants an integer) and `name: "80"` is the string "80";
// `version: 1` as a label value is refused, as kubectl refuses it.
//
// Hostile files are bounded: a file over kMaxManifestFileBytes is refused
// whole (and keeps its last good contents, like an unreadable one), and a
// YAML document whose aliases would expand past kMaxAliasNodes is refused
// before it is expanded; the other files and documents load.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "base/error.h"
#include "k8s/decode.h"
#include "k8s/object_cache.h"
#include "k8s/sink.h"

namespace kipvs::k8s {

// One document (or List item) that was skipped, or a file that could not be
// read. `document` and `line` are 1-based (0 when the whole file is meant);
// `item` is the index in a List's items.
struct ManifestError {
  std::filesystem::path file;
  std::size_t document = 0;
  std::size_t line = 0;
  std::optional<std::size_t> item;
  std::optional<ResourceKind> kind;  // set when the kind was recognised
  std::string object;                // namespace/name, or "?"
  std::string reason;                // metric label: a DecodeError reason or one of kManifestReason*
  std::string message;
};

inline constexpr std::string_view kManifestReasonUnreadable = "unreadable";  // the file could not be read
inline constexpr std::string_view kManifestReasonBadYaml = "bad_yaml";       // YAML syntax error
inline constexpr std::string_view kManifestReasonBadJson = "bad_json";       // JSON syntax error
inline constexpr std::string_view kManifestReasonDuplicate = "duplicate";    // same kind and key seen before
inline constexpr std::string_view kManifestReasonTooLarge = "too_large";     // over kMaxManifestFileBytes
// YAML aliases would add more than kMaxAliasNodes nodes, or name their own
// enclosing node.
inline constexpr std::string_view kManifestReasonExcessiveAliasing = "excessive_aliasing";

// Bounds on hostile files. A file larger than this is refused unread (the API
// server's own request limit is 3 MiB). YAML aliases may add at most
// kMaxAliasNodes nodes to a document when expanded ("billion laughs": a few
// hundred bytes that name each other nine times over expand to billions);
// a document without aliases is never refused for its size in nodes.
inline constexpr std::size_t kMaxManifestFileBytes = 4u << 20;
inline constexpr std::uint64_t kMaxAliasNodes = 100'000;

// "dir/a.yaml: document 2 (line 14): default/web: spec.ports[0].port: ... (bad_port)"
[[nodiscard]] std::string to_string(const ManifestError& error);

// What one file yields. `syntax_ok` is false when the file could not be read
// or a document in it is not well-formed YAML/JSON: most likely a file caught
// half-written, so the watching source keeps the file's last good contents.
struct ManifestFile {
  std::vector<AnyObject> objects;
  std::vector<ManifestError> errors;
  bool syntax_ok = true;
};

enum class ManifestFormat { kYaml, kJson };

// Parses one file's text; `file` only names it in errors.
[[nodiscard]] ManifestFile parse_manifests(std::string_view text, ManifestFormat format,
                                           const std::filesystem::path& file);

// Reads and parses one file (the format from its extension: .json is JSON).
[[nodiscard]] ManifestFile load_manifest_file(const std::filesystem::path& file);

// The manifest files of `dir` as described above, sorted by name. Fails when
// the directory cannot be listed.
[[nodiscard]] std::expected<std::vector<std::filesystem::path>, Error> list_manifest_files(
    const std::filesystem::path& dir);

// Everything in `dir`. The same kind and namespace/name defined twice keeps
// the first (in file order) and reports the second as kManifestReasonDuplicate.
struct Manifests {
  std::vector<AnyObject> objects;
  std::vector<ManifestError> errors;
};
[[nodiscard]] std::expected<Manifests, Error> load_manifests(const std::filesystem::path& dir);

// Feeds an ObjectSink from a manifest directory and follows its changes.
//
// start() loads the directory, delivers every object, then synced() for each
// kind. Afterwards inotify events on the directory (coalesced: a reload runs
// once no event came for `settle`, or at the latest `max_delay` after the
// first) trigger a reload that passes on only the differences: added,
// changed and deleted objects. Only the Node named `node_name` is passed on
// (none when it is empty). Skipped documents go to sink.object_skipped()
// (when their kind is known) and to the log. A file with a syntax error keeps
// its last good contents until it is fixed, so a half-written file does not
// drop Services.
//
// Lives on, and must be used from, the io_context's one thread.
class ManifestSource {
 public:
  struct Options {
    std::filesystem::path dir;
    std::string node_name;
    std::chrono::milliseconds settle{100};
    std::chrono::milliseconds max_delay{1000};
    // Where log lines go (one call per line, no newline); default stderr.
    std::function<void(std::string_view)> log;
    // inotify is silent on network file systems (9p, NFS) and for a change
    // to a symlink's target elsewhere: every rescan_period the files' names,
    // sizes and modification times are compared too, and a difference
    // reloads (kubelet's file source checks every 20 s). 0 disables it.
    std::chrono::milliseconds rescan_period{20'000};
  };

  ManifestSource(boost::asio::io_context& io, Options options, ObjectSink& sink);
  ~ManifestSource();
  ManifestSource(const ManifestSource&) = delete;
  ManifestSource& operator=(const ManifestSource&) = delete;

  // The first load and delivery, then watching. Fails when the directory
  // cannot be listed or watched (a start-up error).
  [[nodiscard]] std::expected<void, Error> start();
  // Stops watching; the sink is not called afterwards.
  void stop();
  // Reloads now (also for a SIGHUP), passing on the differences.
  void reload();
  // How many loads ran, the first included.
  [[nodiscard]] std::size_t loads() const { return loads_; }

 private:
  void watch();
  void on_event();
  void arm_rescan();
  // Names, sizes and modification times of the manifest files now.
  [[nodiscard]] std::vector<
      std::tuple<std::filesystem::path, std::uintmax_t, std::filesystem::file_time_type>>
  fingerprint() const;
  void report(const ManifestError& error);

  boost::asio::io_context& io_;
  Options options_;
  ObjectSink& sink_;
  std::optional<boost::asio::posix::stream_descriptor> inotify_;
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer rescan_timer_;
  std::vector<std::tuple<std::filesystem::path, std::uintmax_t, std::filesystem::file_time_type>> scanned_;
  std::optional<std::chrono::steady_clock::time_point> pending_since_;
  std::vector<char> buffer_;
  // Handlers hold a weak_ptr to this: after destruction they do nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::map<std::filesystem::path, ManifestFile> last_good_;
  ObjectCache<Service> services_;
  ObjectCache<EndpointSlice> slices_;
  ObjectCache<Node> nodes_;
  std::size_t loads_ = 0;
};

}  // namespace kipvs::k8s
