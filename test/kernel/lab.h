#pragma once
// What the kernel tests that run the real kipvs binary share: a scratch
// folder in the guest, files written whole, polling with a deadline, and
// kipvs itself run as node-a from a folder of manifests.
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kipvs::test {

// The guest's python (a pyenv shim on the path takes ~20 s to start there).
inline constexpr const char* kPython = "/usr/bin/python3";

// A folder of this process's own in the guest's /tmp (a tmpfs), one per name.
std::filesystem::path scratch(std::string_view name);

// Written to a side file and renamed, so a watcher never reads half of it.
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

// Polls until pred() holds; false after the deadline. Generous: the guest is
// an emulated CPU shared with other work.
bool eventually(const std::function<bool()>& pred, std::chrono::seconds limit = std::chrono::seconds(90));

// Runs `command` in the background under `prefix` (a peer namespace's exec
// prefix) and waits, at most 2 minutes, until address:port accepts.
void start_listener(const std::string& prefix, const std::string& command, const std::string& address,
                    int port);

// The kipvs binary this build made (CMake passes its path).
std::filesystem::path kipvs_binary();

// kipvs run as node-a (node IP 10.250.0.1) from a folder of manifests, its
// output appended to a log file; stopped with SIGTERM when it goes away.
class Kipvs {
 public:
  Kipvs(const std::filesystem::path& manifests, const std::filesystem::path& log,
        const std::vector<std::string>& extra = {});
  ~Kipvs() { stop(); }
  Kipvs(const Kipvs&) = delete;
  Kipvs& operator=(const Kipvs&) = delete;

  // Stops it; the exit status (or 128 + signal).
  int stop(int signal = SIGTERM);
  [[nodiscard]] std::string log() const { return read_file(log_); }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  int status_ = 0;
};

struct Running {
  std::filesystem::path dir;
  std::unique_ptr<Kipvs> kipvs;
};

// Writes `manifests` to DIR/FILE, starts kipvs on DIR (log: DIR.log) and
// waits for its first full sync; fails the case if none comes.
Running start_kipvs(const std::filesystem::path& dir, const std::string& file, const std::string& manifests,
                    const std::vector<std::string>& extra = {});

}  // namespace kipvs::test
