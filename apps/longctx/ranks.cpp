#include "ranks.h"

#include <memory>

namespace longctx::cli {

namespace {
std::string g_activity = "starting";
}  // namespace

Comm& world() {
  static std::unique_ptr<Comm> c = launched_with_ranks() ? make_mpi_comm() : make_local_comm();
  return *c;
}

bool is_root() { return !launched_with_ranks() || world().rank() == 0; }
void set_activity(const std::string& what) { g_activity = what; }
const std::string& activity() { return g_activity; }

}  // namespace longctx::cli
