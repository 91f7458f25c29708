// FO_CUDA_EMU: the emulator's switches, read once. Unknown keys or values are fatal, so a
// CI job never runs in a mode it did not ask for.
#include <cstdlib>
#include <sstream>
#include <string>

#include "emu.h"

namespace cuda_emu {
namespace {

Order parse_order(const std::string& key, const std::string& v) {
  if (v == "forward") return Order::Forward;
  if (v == "reverse") return Order::Reverse;
  if (v == "random") return Order::Random;
  fatal("FO_CUDA_EMU: " + key + " must be forward, reverse or random, got '" + v + "'");
}

uint64_t parse_number(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  uint64_t scale = 1;
  if (end && (*end == 'G' || *end == 'g'))
    scale = uint64_t(1) << 30, ++end;
  else if (end && (*end == 'M' || *end == 'm'))
    scale = uint64_t(1) << 20, ++end;
  if (v.empty() || !end || *end != '\0') fatal("FO_CUDA_EMU: " + key + " must be a number, got '" + v + "'");
  return uint64_t(n) * scale;
}

void apply(Config& c, const std::string& key, const std::string& v) {
  if (key == "threads") {
    if (v == "fiber")
      c.threads = ThreadMode::Fiber;
    else if (v == "os")
      c.threads = ThreadMode::Os;
    else
      fatal("FO_CUDA_EMU: threads must be fiber or os, got '" + v + "'");
  } else if (key == "exec") {
    if (v == "deferred")
      c.deferred = true;
    else if (v == "eager")
      c.deferred = false;
    else
      fatal("FO_CUDA_EMU: exec must be deferred or eager, got '" + v + "'");
  } else if (key == "thread-order") {
    c.thread_order = parse_order(key, v);
  } else if (key == "block-order") {
    c.block_order = parse_order(key, v);
  } else if (key == "seed") {
    c.seed = parse_number(key, v);
  } else if (key == "protect") {
    if (v == "pkey")
      c.protect = Protect::Pkey;
    else if (v == "mprotect")
      c.protect = Protect::Mprotect;
    else if (v == "off")
      c.protect = Protect::Off;
    else
      fatal("FO_CUDA_EMU: protect must be pkey, mprotect or off, got '" + v + "'");
  } else if (key == "memory") {
    c.memory_bytes = size_t(parse_number(key, v));
  } else if (key == "param-limit") {
    c.param_limit = size_t(parse_number(key, v));
  } else if (key == "driver") {
    c.driver_version = int(parse_number(key, v));
  } else if (key == "devices") {
    c.device_count = int(parse_number(key, v));
  } else {
    fatal("FO_CUDA_EMU: unknown key '" + key +
          "' (known: threads, exec, thread-order, block-order, seed, protect, memory, param-limit, driver, devices)");
  }
}

Config load() {
  Config c;
  const char* env = std::getenv("FO_CUDA_EMU");
  if (!env) return c;
  std::stringstream all(env);
  std::string item;
  while (std::getline(all, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) fatal("FO_CUDA_EMU: expected key=value, got '" + item + "'");
    apply(c, item.substr(0, eq), item.substr(eq + 1));
  }
  return c;
}

const char* order_name(Order o) { return o == Order::Forward ? "forward" : o == Order::Reverse ? "reverse" : "random"; }

}  // namespace

const Config& config() {
  static const Config c = load();
  return c;
}

std::string describe_config() {
  const Config& c = config();
  const Protect p = protection_in_use();
  std::string protect = p == Protect::Pkey ? "pkey" : p == Protect::Mprotect ? "mprotect" : "off";
  return std::string("threads=") + (c.threads == ThreadMode::Fiber ? "fiber" : "os") +
         " exec=" + (c.deferred ? "deferred" : "eager") + " thread-order=" + order_name(c.thread_order) +
         " block-order=" + order_name(c.block_order) + " seed=" + std::to_string(c.seed) + " protect=" + protect;
}

}  // namespace cuda_emu
