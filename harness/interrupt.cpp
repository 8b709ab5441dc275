#include "harness/interrupt.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "common/error.hpp"

namespace tqb {
namespace {

int pipe_fds[2] = {-1, -1};
struct sigaction previous_int, previous_term;

extern "C" void on_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(pipe_fds[1], &b, 1);
}

}  // namespace

InterruptGuard::InterruptGuard(std::mutex& state, std::function<void(int)> on_interrupt)
    : state_(state), on_interrupt_(std::move(on_interrupt)) {
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw RunError("cannot create the interrupt pipe");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &previous_int);
  sigaction(SIGTERM, &sa, &previous_term);
  watcher_ = std::thread([this] {
    unsigned char sig = 0;
    while (::read(pipe_fds[0], &sig, 1) < 0) {
    }
    if (sig == 0) return;  // the guard's end
    std::lock_guard<std::mutex> hold(state_);
    on_interrupt_(sig);
    std::fflush(nullptr);
    ::_exit(128 + sig);
  });
}

InterruptGuard::~InterruptGuard() {
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);
  const unsigned char stop = 0;
  [[maybe_unused]] const ssize_t n = ::write(pipe_fds[1], &stop, 1);
  watcher_.join();
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  pipe_fds[0] = pipe_fds[1] = -1;
}

}  // namespace tqb
