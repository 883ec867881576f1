#include "lab.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "netns.h"

namespace kipvs::test {

namespace fs = std::filesystem;

fs::path scratch(std::string_view name) {
  fs::path path =
      fs::temp_directory_path() / ("kipvs-" + std::string(name) + "-" + std::to_string(::getpid()));
  fs::create_directories(path);
  return path;
}

void write_file(const fs::path& path, const std::string& text) {
  const auto partial = path.string() + ".part";
  std::ofstream(partial) << text;
  fs::rename(partial, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool eventually(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return pred();
}

void start_listener(const std::string& prefix, const std::string& command, const std::string& address,
                    int port) {
  run_ok(prefix + "bash -c '" + command + " >/dev/null 2>&1 & for i in $(seq 600); do (echo > /dev/tcp/" +
         address + "/" + std::to_string(port) + ") 2>/dev/null && exit 0; sleep 0.2; done; exit 1'");
}

fs::path kipvs_binary() {
  return KIPVS_BINARY;  // the build's, set by CMake
}

Kipvs::Kipvs(const fs::path& manifests, const fs::path& log, const std::vector<std::string>& extra)
    : log_(log) {
  const auto binary = kipvs_binary();
  REQUIRE(fs::exists(binary));
  std::vector<std::string> args{binary.string(), "--manifests", manifests.string(), "--hostname-override",
                                "node-a",        "--node-ip",   "10.250.0.1"};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
}

int Kipvs::stop(int signal) {
  if (pid_ <= 0) return status_;
  ::kill(pid_, signal);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return status_;
}

Running start_kipvs(const fs::path& dir, const std::string& file, const std::string& manifests,
                    const std::vector<std::string>& extra) {
  Running running;
  running.dir = dir;
  fs::create_directories(dir);
  write_file(dir / file, manifests);
  running.kipvs = std::make_unique<Kipvs>(dir, dir.string() + ".log", extra);
  auto& kipvs = *running.kipvs;
  const bool synced = eventually([&] { return kipvs.log().find("sync full") != std::string::npos; });
  INFO("kipvs log:\n" << kipvs.log());
  REQUIRE(synced);
  return running;
}

}  // namespace kipvs::test
