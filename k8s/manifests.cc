#include "k8s/manifests.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

namespace kipvs::k8s {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

// Deeper than any Kubernetes object; bounds the recursion on hostile input.
constexpr int kMaxDepth = 64;

struct YamlProblem {
  std::string message;
  std::size_t line = 0;  // 0-based, within the document's text
};

// --- YAML 1.2 core schema resolution of plain (unquoted) scalars ------------

bool is_null_word(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> as_bool_word(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// Integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+. One too large for int64
// becomes a double (and is then refused by any integer field).
std::optional<json::value> as_int_word(std::string_view s) {
  int base = 10;
  bool negative = false;
  std::string_view digits = s;
  if (digits.starts_with("0x")) {
    base = 16;
    digits.remove_prefix(2);
  } else if (digits.starts_with("0o")) {
    base = 8;
    digits.remove_prefix(2);
  } else if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return std::nullopt;
  std::uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (end != digits.data() + digits.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range ||
      magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    if (base != 10) return std::nullopt;
    double d = std::strtod(std::string(s).c_str(), nullptr);
    return json::value(d);
  }
  auto n = static_cast<std::int64_t>(magnitude);
  return json::value(negative ? -n : n);
}

// Floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, .nan.
std::optional<json::value> as_float_word(std::string_view s) {
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    return json::value(negative ? -std::numeric_limits<double>::infinity()
                                : std::numeric_limits<double>::infinity());
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return json::value(std::numeric_limits<double>::quiet_NaN());
  std::size_t i = 0;
  auto digits = [&] {
    std::size_t start = i;
    while (i < body.size() && body[i] >= '0' && body[i] <= '9') ++i;
    return i - start;
  };
  std::size_t whole = digits();
  std::size_t fraction = 0;
  if (i < body.size() && body[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0) return std::nullopt;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '-' || body[i] == '+')) ++i;
    if (digits() == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  return json::value(std::strtod(std::string(s).c_str(), nullptr));
}

json::value resolve_plain(const std::string& s) {
  if (is_null_word(s)) return nullptr;
  if (auto b = as_bool_word(s)) return *b;
  if (auto i = as_int_word(s)) return *i;
  if (auto f = as_float_word(s)) return *f;
  return json::string(s);
}

constexpr std::string_view kCoreTag = "tag:yaml.org,2002:";

std::expected<json::value, YamlProblem> scalar_to_json(const YAML::Node& node) {
  const std::string& tag = node.Tag();
  const std::string& text = node.Scalar();
  const auto line = static_cast<std::size_t>(std::max(node.Mark().line, 0));
  // "!" is what yaml-cpp gives every quoted or block scalar: always a string.
  if (tag == "!") return json::value(json::string(text));
  if (tag == "?" || tag.empty()) return resolve_plain(text);
  if (tag.starts_with(kCoreTag)) {
    std::string_view type = std::string_view(tag).substr(kCoreTag.size());
    if (type == "str") return json::value(json::string(text));
    json::value v = resolve_plain(text);
    bool fits = (type == "null" && v.is_null()) || (type == "bool" && v.is_bool()) ||
                (type == "int" && (v.is_int64() || v.is_uint64())) ||
                (type == "float" && (v.is_double() || v.is_int64() || v.is_uint64()));
    if (fits) {
      if (type == "float" && !v.is_double()) v = v.to_number<double>();
      return v;
    }
    return std::unexpected(YamlProblem{"\"" + text + "\" is not a valid !!" + std::string(type), line});
  }
  return std::unexpected(YamlProblem{"unsupported tag " + tag, line});
}

std::expected<json::value, YamlProblem> to_json(const YAML::Node& node, int depth) {
  const auto line = static_cast<std::size_t>(std::max(node.Mark().line, 0));
  if (depth > kMaxDepth) return std::unexpected(YamlProblem{"nested too deeply", line});
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return json::value(nullptr);
    case YAML::NodeType::Scalar:
      return scalar_to_json(node);
    case YAML::NodeType::Sequence: {
      json::array array;
      array.reserve(node.size());
      for (const YAML::Node& item : node) {
        auto v = to_json(item, depth + 1);
        if (!v) return v;
        array.push_back(std::move(*v));
      }
      return json::value(std::move(array));
    }
    case YAML::NodeType::Map: {
      json::object object;
      for (const auto& member : node) {
        const auto key_line = static_cast<std::size_t>(std::max(member.first.Mark().line, 0));
        if (!member.first.IsScalar())
          return std::unexpected(YamlProblem{"a mapping key must be a scalar", key_line});
        const std::string& key = member.first.Scalar();
        // yaml-cpp keeps both copies of a repeated key; kubectl refuses them.
        if (object.contains(key))
          return std::unexpected(YamlProblem{"key \"" + key + "\" repeated", key_line});
        auto v = to_json(member.second, depth + 1);
        if (!v) return v;
        object.emplace(key, std::move(*v));
      }
      return json::value(std::move(object));
    }
  }
  return json::value(nullptr);
}

// Counts, from the parser's events, how many nodes a document has once its
// aliases are expanded, without expanding them: each anchored node's
// expanded size is known when it ends, and an alias adds that size. Linear
// in the text, however many times the aliases multiply.
class AliasExpansion final : public YAML::EventHandler {
 public:
  std::uint64_t written = 0;    // nodes in the text, an alias counting one
  std::uint64_t expanded = 0;   // nodes once aliases are replaced by what they name
  bool self_reference = false;  // an alias inside the node it names

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t anchor) override { leaf(anchor); }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t anchor, const std::string&) override {
    leaf(anchor);
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    ++written;
    const auto it = sizes_.find(anchor);
    if (it == sizes_.end()) {
      self_reference = true;  // still open (yaml-cpp registers an anchor at its node's start)
      return;
    }
    add(it->second);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Open {
    YAML::anchor_t anchor;
    std::uint64_t size;
  };
  // Saturating: the sizes only need to be compared with a bound.
  static std::uint64_t sum(std::uint64_t a, std::uint64_t b) {
    return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max()
                                                             : a + b;
  }
  void add(std::uint64_t size) {
    if (open_.empty()) {
      expanded = sum(expanded, size);
    } else {
      open_.back().size = sum(open_.back().size, size);
    }
  }
  void leaf(YAML::anchor_t anchor) {
    ++written;
    if (anchor != YAML::NullAnchor) sizes_[anchor] = 1;
    add(1);
  }
  void open(YAML::anchor_t anchor) {
    ++written;
    open_.push_back({anchor, 1});
  }
  void close() {
    const Open done = open_.back();
    open_.pop_back();
    if (done.anchor != YAML::NullAnchor) sizes_[done.anchor] = done.size;
    add(done.size);
  }

  std::vector<Open> open_;
  std::map<YAML::anchor_t, std::uint64_t> sizes_;
};

// Whether a document's aliases stay within bounds, or why not. The text has
// parsed once already, so it parses again.
std::expected<void, Error> check_aliasing(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  AliasExpansion count;
  parser.HandleNextDocument(count);
  if (count.self_reference)
    return std::unexpected(Error{.message = "an alias names the node that contains it"});
  if (count.expanded - count.written > kMaxAliasNodes) {
    return std::unexpected(
        Error{.message = "aliases would expand the document from " + std::to_string(count.written) + " to " +
                         (count.expanded == std::numeric_limits<std::uint64_t>::max()
                              ? std::string("more than 2^64")
                              : std::to_string(count.expanded)) +
                         " nodes; at most " + std::to_string(kMaxAliasNodes) + " may come from aliases"});
  }
  return {};
}

std::optional<ResourceKind> kind_from_name(std::string_view kind) {
  if (kind == "Service") return ResourceKind::kService;
  if (kind == "EndpointSlice") return ResourceKind::kEndpointSlice;
  if (kind == "Node") return ResourceKind::kNode;
  return std::nullopt;
}

std::string_view kind_field(const json::object& object) {
  const json::value* kind = object.if_contains("kind");
  return kind != nullptr && kind->is_string() ? std::string_view(kind->get_string()) : std::string_view();
}

// kubectl puts namespaced objects without a namespace in "default"; a
// namespace on a Node means nothing.
void default_namespace(AnyObject& object) {
  std::visit(
      [](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, Node>) {
          o.meta.namespace_.clear();
        } else if (o.meta.namespace_.empty()) {
          o.meta.namespace_ = "default";
        }
      },
      object);
}

// Where a document came from, for errors.
struct Origin {
  const fs::path& file;
  std::size_t document;
  std::size_t line;
};

void add_error(ManifestFile& out, const Origin& at, std::optional<std::size_t> item,
               std::optional<ResourceKind> kind, const DecodeError& error) {
  // Name the object as it would have been keyed: namespaced kinds without a
  // namespace live in "default".
  std::string object = error.object;
  if (kind && *kind != ResourceKind::kNode && object != "?" && object.find('/') == std::string::npos) {
    object = "default/" + object;
  }
  out.errors.push_back(ManifestError{at.file, at.document, at.line, item, kind, std::move(object),
                                     error.reason, error.message});
}

void add_decoded(ManifestFile& out, const Origin& at, std::optional<std::size_t> item,
                 std::optional<ResourceKind> kind, std::expected<AnyObject, DecodeError> decoded) {
  if (!decoded) {
    add_error(out, at, item, kind, decoded.error());
    return;
  }
  default_namespace(*decoded);
  out.objects.push_back(std::move(*decoded));
}

std::expected<AnyObject, DecodeError> decode_as(ResourceKind kind, const json::value& v) {
  auto widen = [](auto decoded) -> std::expected<AnyObject, DecodeError> {
    if (!decoded) return std::unexpected(std::move(decoded.error()));
    return AnyObject(std::move(*decoded));
  };
  switch (kind) {
    case ResourceKind::kService:
      return widen(decode_service(v));
    case ResourceKind::kEndpointSlice:
      return widen(decode_endpoint_slice(v));
    case ResourceKind::kNode:
      return widen(decode_node(v));
  }
  return std::unexpected(DecodeError{"?", std::string(kReasonUnknownKind), "unknown kind"});
}

void add_document(ManifestFile& out, const Origin& at, const json::value& doc) {
  if (doc.is_null()) return;  // an empty document, e.g. after a trailing "---"
  if (!doc.is_object()) {
    add_error(out, at, std::nullopt, std::nullopt,
              DecodeError{"?", std::string(kReasonBadType), "a document must be a mapping (an object)"});
    return;
  }
  const std::string_view kind = kind_field(doc.get_object());
  // "List" holds items of any kind, each naming its kind; "ServiceList" and
  // friends (what the API returns) hold items of one kind without a kind.
  std::optional<ResourceKind> item_kind;
  if (kind.ends_with("List") && kind != "List") {
    item_kind = kind_from_name(kind.substr(0, kind.size() - 4));
    if (!item_kind) {
      add_error(out, at, std::nullopt, std::nullopt,
                DecodeError{"?", std::string(kReasonUnknownKind),
                            "kind: " + std::string(kind) + " is not read by kipvs"});
      return;
    }
  }
  if (kind == "List" || item_kind) {
    const json::value* items = doc.get_object().if_contains("items");
    if (items == nullptr || items->is_null()) return;
    if (!items->is_array()) {
      add_error(out, at, std::nullopt, item_kind,
                DecodeError{"?", std::string(kReasonBadType), "items: expected an array"});
      return;
    }
    for (std::size_t i = 0; i < items->get_array().size(); ++i) {
      const json::value& entry = items->get_array()[i];
      if (item_kind) {
        add_decoded(out, at, i, item_kind, decode_as(*item_kind, entry));
      } else {
        std::optional<ResourceKind> k =
            entry.is_object() ? kind_from_name(kind_field(entry.get_object())) : std::nullopt;
        add_decoded(out, at, i, k, decode_object(entry));
      }
    }
    return;
  }
  add_decoded(out, at, std::nullopt, kind_from_name(kind), decode_object(doc));
}

// A line that starts a new YAML document: "---" alone or followed by
// whitespace (and possibly content, as in "--- {a: 1}"). "..." ends one.
bool is_document_marker(std::string_view line, std::string_view& rest) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  if (line == "...") {
    rest = {};
    return true;
  }
  if (!line.starts_with("---")) return false;
  if (line.size() == 3) {
    rest = {};
    return true;
  }
  if (line[3] != ' ' && line[3] != '\t') return false;
  rest = line.substr(4);
  return true;
}

void parse_yaml(std::string_view text, const fs::path& file, ManifestFile& out) {
  // Split into documents ourselves (rather than YAML::LoadAll) so that a
  // syntax error in one document does not lose the others.
  struct Chunk {
    std::string text;
    std::size_t line;  // 1-based first line
  };
  std::vector<Chunk> chunks{{std::string(), 1}};
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    ++line_no;
    std::string_view rest;
    if (is_document_marker(line, rest)) {
      chunks.push_back(Chunk{std::string(rest), line_no});
      chunks.back().text.push_back('\n');
    } else {
      chunks.back().text.append(line);
      chunks.back().text.push_back('\n');
    }
    pos = end + 1;
  }
  std::size_t document = 0;
  for (const Chunk& chunk : chunks) {
    YAML::Node node;
    try {
      node = YAML::Load(chunk.text);
    } catch (const YAML::Exception& e) {
      ++document;
      out.syntax_ok = false;
      const std::size_t line = chunk.line + static_cast<std::size_t>(std::max(e.mark.line, 0));
      out.errors.push_back(ManifestError{file, document, line, std::nullopt, std::nullopt, "?",
                                         std::string(kManifestReasonBadYaml), e.msg});
      continue;
    }
    // Only comments or whitespace (e.g. before the first "---"): not a document.
    if (node.IsNull()) {
      bool only_comments = true;
      std::istringstream lines(chunk.text);
      for (std::string l; std::getline(lines, l);) {
        auto first = l.find_first_not_of(" \t\r");
        if (first != std::string::npos && l[first] != '#') only_comments = false;
      }
      if (only_comments) continue;
    }
    ++document;
    // Checked before to_json, which expands every alias.
    if (auto aliasing = check_aliasing(chunk.text); !aliasing) {
      out.errors.push_back(ManifestError{file, document, chunk.line, std::nullopt, std::nullopt, "?",
                                         std::string(kManifestReasonExcessiveAliasing),
                                         std::move(aliasing.error().message)});
      continue;
    }
    auto value = to_json(node, 0);
    if (!value) {
      out.errors.push_back(ManifestError{file, document, chunk.line + value.error().line, std::nullopt,
                                         std::nullopt, "?", std::string(kReasonBadType),
                                         value.error().message});
      continue;
    }
    add_document(out, Origin{file, document, chunk.line}, *value);
  }
}

void parse_json(std::string_view text, const fs::path& file, ManifestFile& out) {
  json::parse_options options;
  options.max_depth = kMaxDepth;
  json::stream_parser parser({}, options);
  std::size_t pos = 0;
  std::size_t line = 1;
  std::size_t document = 0;
  auto advance_to = [&](std::size_t next) {
    line += static_cast<std::size_t>(std::count(text.begin() + static_cast<std::ptrdiff_t>(pos),
                                                text.begin() + static_cast<std::ptrdiff_t>(next), '\n'));
    pos = next;
  };
  while (true) {
    std::size_t start = text.find_first_not_of(" \t\r\n", pos);
    if (start == std::string_view::npos) break;
    advance_to(start);
    ++document;
    parser.reset();
    boost::system::error_code ec;
    std::size_t used = parser.write_some(text.data() + pos, text.size() - pos, ec);
    if (!ec && !parser.done()) parser.finish(ec);
    if (ec) {
      // No way to find the next value after a syntax error: stop here.
      out.syntax_ok = false;
      out.errors.push_back(ManifestError{file, document, line, std::nullopt, std::nullopt, "?",
                                         std::string(kManifestReasonBadJson), ec.message()});
      return;
    }
    const std::size_t doc_line = line;
    advance_to(pos + used);
    add_document(out, Origin{file, document, doc_line}, parser.release());
  }
}

bool is_manifest_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  return name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
}

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

// Joins files into per-kind maps; the first definition of a key wins.
struct Merged {
  std::map<ObjectKey, Service> services;
  std::map<ObjectKey, EndpointSlice> slices;
  std::map<ObjectKey, Node> nodes;
  std::vector<AnyObject> ordered;  // in file order, for load_manifests
  std::vector<ManifestError> duplicates;
};

Merged merge(const std::vector<std::pair<fs::path, const ManifestFile*>>& files) {
  Merged merged;
  for (const auto& [path, file] : files) {
    for (const AnyObject& object : file->objects) {
      const ObjectKey key = key_of(object);
      bool inserted = std::visit(
          [&](const auto& o) {
            using T = std::decay_t<decltype(o)>;
            if constexpr (std::is_same_v<T, Service>) return merged.services.emplace(key, o).second;
            if constexpr (std::is_same_v<T, EndpointSlice>) return merged.slices.emplace(key, o).second;
            if constexpr (std::is_same_v<T, Node>) return merged.nodes.emplace(key, o).second;
          },
          object);
      if (inserted) {
        merged.ordered.push_back(object);
        continue;
      }
      const ResourceKind kind = kind_of(object);
      std::string name = key.namespace_.empty() ? key.name : key.namespace_ + "/" + key.name;
      merged.duplicates.push_back(
          ManifestError{path, 0, 0, std::nullopt, kind, name, std::string(kManifestReasonDuplicate),
                        std::string(kind_name(kind)) + " " + name +
                            " is defined more than once; the first definition is used"});
    }
  }
  return merged;
}

}  // namespace

std::string to_string(const ManifestError& error) {
  std::string out = error.file.string();
  if (error.document > 0) out += ": document " + std::to_string(error.document);
  if (error.line > 0) out += " (line " + std::to_string(error.line) + ")";
  if (error.item) out += ": items[" + std::to_string(*error.item) + "]";
  out += ": ";
  if (error.kind) out += std::string(kind_name(*error.kind)) + " ";
  if (error.object != "?") out += error.object + ": ";
  out += error.message + " (" + error.reason + ")";
  return out;
}

ManifestFile parse_manifests(std::string_view text, ManifestFormat format, const fs::path& file) {
  ManifestFile out;
  if (format == ManifestFormat::kJson) {
    parse_json(text, file, out);
  } else {
    parse_yaml(text, file, out);
  }
  return out;
}

ManifestFile load_manifest_file(const fs::path& file) {
  auto refused = [&](std::string_view reason, std::string message) {
    ManifestFile out;
    out.syntax_ok = false;  // like a file caught half-written: its last good contents stay
    out.errors.push_back(
        ManifestError{file, 0, 0, std::nullopt, std::nullopt, "?", std::string(reason), std::move(message)});
    return out;
  };
  std::ifstream in(file, std::ios::binary);
  // One byte past the cap tells a file over it, whatever its size said a
  // moment ago (it may be growing, or not be a regular file).
  std::string text(kMaxManifestFileBytes + 1, '\0');
  if (in) in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in && !in.eof()) return refused(kManifestReasonUnreadable, "cannot read: " + errno_text(errno));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxManifestFileBytes) {
    return refused(kManifestReasonTooLarge,
                   "larger than " + std::to_string(kMaxManifestFileBytes) + " bytes; not read");
  }
  const ManifestFormat format = file.extension() == ".json" ? ManifestFormat::kJson : ManifestFormat::kYaml;
  return parse_manifests(text, format, file);
}

std::expected<std::vector<fs::path>, Error> list_manifest_files(const fs::path& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec)
    return std::unexpected(
        Error{.message = "cannot list manifest directory " + dir.string() + ": " + ec.message()});
  std::vector<fs::path> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec)
      return std::unexpected(
          Error{.message = "cannot list manifest directory " + dir.string() + ": " + ec.message()});
    const fs::path& path = it->path();
    std::error_code type_ec;
    if (!is_manifest_name(path.filename().string()) || !fs::is_regular_file(path, type_ec)) continue;
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::expected<Manifests, Error> load_manifests(const fs::path& dir) {
  auto paths = list_manifest_files(dir);
  if (!paths) return std::unexpected(std::move(paths.error()));
  std::vector<ManifestFile> files;
  files.reserve(paths->size());
  std::vector<std::pair<fs::path, const ManifestFile*>> refs;
  Manifests out;
  for (const fs::path& path : *paths) {
    files.push_back(load_manifest_file(path));
    out.errors.insert(out.errors.end(), files.back().errors.begin(), files.back().errors.end());
  }
  for (std::size_t i = 0; i < files.size(); ++i) refs.emplace_back((*paths)[i], &files[i]);
  Merged merged = merge(refs);
  out.objects = std::move(merged.ordered);
  out.errors.insert(out.errors.end(), merged.duplicates.begin(), merged.duplicates.end());
  return out;
}

// --- ManifestSource -----------------------------------------------------------

ManifestSource::ManifestSource(boost::asio::io_context& io, Options options, ObjectSink& sink)
    : io_(io), options_(std::move(options)), sink_(sink), timer_(io), rescan_timer_(io), buffer_(64 * 1024) {
  if (!options_.log) {
    options_.log = [](std::string_view line) {
      std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
    };
  }
}

ManifestSource::~ManifestSource() {
  alive_.reset();
  stop();
}

std::expected<void, Error> ManifestSource::start() {
  // Watch before the first read, so a change made while reading is not lost.
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return std::unexpected(Error{.message = "inotify_init1: " + errno_text(errno)});
  constexpr std::uint32_t kMask = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                  IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
  if (::inotify_add_watch(fd, options_.dir.c_str(), kMask) < 0) {
    const int error = errno;
    ::close(fd);
    return std::unexpected(Error{.message = "cannot watch manifest directory " + options_.dir.string() +
                                            ": " + errno_text(error)});
  }
  inotify_.emplace(io_, fd);
  if (auto files = list_manifest_files(options_.dir); !files) {
    stop();
    return std::unexpected(std::move(files.error()));
  }
  reload();
  sink_.synced(ResourceKind::kService);
  sink_.synced(ResourceKind::kEndpointSlice);
  sink_.synced(ResourceKind::kNode);
  watch();
  arm_rescan();
  return {};
}

std::vector<std::tuple<fs::path, std::uintmax_t, fs::file_time_type>> ManifestSource::fingerprint() const {
  std::vector<std::tuple<fs::path, std::uintmax_t, fs::file_time_type>> out;
  auto paths = list_manifest_files(options_.dir);
  if (!paths) return out;
  for (const auto& path : *paths) {
    std::error_code error;
    const auto size = fs::file_size(path, error);  // follows a symlink to its target
    const auto time = fs::last_write_time(path, error);
    out.emplace_back(path, error ? 0 : size, error ? fs::file_time_type{} : time);
  }
  return out;
}

void ManifestSource::arm_rescan() {
  if (options_.rescan_period.count() <= 0 || !inotify_) return;
  rescan_timer_.expires_after(options_.rescan_period);
  rescan_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (alive.expired() || ec || !inotify_) return;
    if (fingerprint() != scanned_) {
      options_.log("manifests: " + options_.dir.string() + " changed without an inotify event; reloading");
      reload();
    }
    arm_rescan();
  });
}

void ManifestSource::stop() {
  boost::system::error_code ignored;
  timer_.cancel();
  rescan_timer_.cancel();
  if (inotify_) {
    inotify_->close(ignored);
    inotify_.reset();
  }
  pending_since_.reset();
}

void ManifestSource::watch() {
  if (!inotify_) return;
  inotify_->async_read_some(boost::asio::buffer(buffer_), [this, alive = std::weak_ptr<int>(alive_)](
                                                              const boost::system::error_code& ec,
                                                              std::size_t size) {
    if (alive.expired() || ec == boost::asio::error::operation_aborted || !inotify_) return;
    if (ec) {
      options_.log("manifests: reading inotify events failed (" + ec.message() + "); changes to " +
                   options_.dir.string() + " are no longer followed");
      return;
    }
    bool relevant = false;
    std::size_t offset = 0;
    while (offset + sizeof(inotify_event) <= size) {
      inotify_event event;
      std::memcpy(&event, buffer_.data() + offset, sizeof event);
      const std::size_t name_size = std::min<std::size_t>(event.len, size - offset - sizeof event);
      std::string name(buffer_.data() + offset + sizeof event, name_size);
      name.resize(std::strlen(name.c_str()));  // the kernel pads with NULs
      offset += sizeof event + event.len;
      if ((event.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
        options_.log("manifests: " + options_.dir.string() +
                     " was removed or moved; keeping the current objects, changes are no longer followed");
      }
      // Manifest files, directory-level events, an overflowed queue, and
      // a ConfigMap volume's "..data" link swap all call for a reload.
      if (name.empty() || is_manifest_name(name) || name.starts_with("..") ||
          (event.mask & IN_Q_OVERFLOW) != 0) {
        relevant = true;
      }
    }
    if (relevant) on_event();
    watch();
  });
}

void ManifestSource::on_event() {
  const auto now = std::chrono::steady_clock::now();
  if (!pending_since_) pending_since_ = now;
  timer_.expires_at(std::min(now + options_.settle, *pending_since_ + options_.max_delay));
  timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
    if (alive.expired() || ec) return;
    pending_since_.reset();
    reload();
  });
}

void ManifestSource::report(const ManifestError& error) {
  options_.log("manifests: skipped: " + to_string(error));
  if (error.kind) {
    std::string what = error.object + " (" + error.file.filename().string();
    if (error.document > 0) what += ", document " + std::to_string(error.document);
    what += ")";
    sink_.object_skipped(*error.kind, what, error.reason);
  }
}

void ManifestSource::reload() {
  if (!inotify_) return;     // stopped (or never started)
  scanned_ = fingerprint();  // before reading: a write meanwhile shows at the next rescan
  auto paths = list_manifest_files(options_.dir);
  if (!paths) {
    options_.log("manifests: " + paths.error().text() + "; keeping the current objects");
    return;
  }
  ++loads_;
  std::map<fs::path, ManifestFile> next;
  std::vector<std::pair<fs::path, const ManifestFile*>> refs;
  for (const fs::path& path : *paths) {
    ManifestFile file = load_manifest_file(path);
    for (const ManifestError& error : file.errors) report(error);
    if (!file.syntax_ok) {
      if (auto it = last_good_.find(path); it != last_good_.end()) {
        options_.log("manifests: " + path.string() + " keeps its last good contents until it parses again");
        file = std::move(it->second);
      }
    }
    file.errors.clear();
    refs.emplace_back(path, &next.emplace(path, std::move(file)).first->second);
  }
  Merged merged = merge(refs);
  for (const ManifestError& error : merged.duplicates) report(error);

  // Only the configured node matters (kube-proxy watches just its own Node).
  std::map<ObjectKey, Node> nodes;
  if (!options_.node_name.empty()) {
    if (auto it = merged.nodes.find(ObjectKey{"", options_.node_name}); it != merged.nodes.end()) {
      nodes.emplace(it->first, std::move(it->second));
    }
  }
  services_.replace(std::move(merged.services),
                    [&](const ObjectKey& key, const Service* now) { sink_.service_changed(key, now); });
  slices_.replace(std::move(merged.slices), [&](const ObjectKey& key, const EndpointSlice* now) {
    sink_.endpoint_slice_changed(key, now);
  });
  nodes_.replace(std::move(nodes), [&](const ObjectKey&, const Node* now) { sink_.node_changed(now); });
  last_good_ = std::move(next);
}

}  // namespace kipvs::k8s
