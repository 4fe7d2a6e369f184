// dsm-node: one node of a dsm cluster. Parses the command line, starts the Runtime, waits for
// SIGINT or SIGTERM and shuts down in order. Exit status: 0 after a signal or --help, 1 when the
// node cannot start (data directory, address in use), 2 for invalid options; the reason is one
// line on stderr.
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

#include "src/http/tls.h"
#include "src/node/command_line.h"
#include "src/node/runtime.h"

int main(int argc, char** argv) {
  dsm::Result<dsm::NodeConfig> config = dsm::ParseCommandLine(argc, argv);
  if (!config.ok()) {
    std::fprintf(stderr, "dsm-node: %s (see --help)\n", config.status().message().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(config->help_text.c_str(), stdout);
    return 0;
  }
  if (dsm::Status s = dsm::http::CheckTlsFiles(config->tls); !s.ok()) {
    std::fprintf(stderr, "dsm-node: %s (see --help)\n", s.message().c_str());
    return 2;
  }

  // Before any thread exists: every thread inherits the blocked set, so SIGINT and SIGTERM are
  // only ever taken by sigwait below. A peer that closes a connection must not kill the process.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto logger = spdlog::stderr_logger_mt("dsm");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] [" + config->node.id + "] %v");
  logger->set_level(spdlog::level::from_str(config->log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);

  dsm::Runtime runtime(*config);
  dsm::Status s = runtime.Start();
  if (!s.ok()) {
    spdlog::shutdown();
    std::fprintf(stderr, "dsm-node: cannot start %s: %s\n", config->node.id.c_str(),
                 s.message().c_str());
    return 1;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  runtime.Stop();
  spdlog::info("stopped");
  spdlog::shutdown();
  return 0;
}
