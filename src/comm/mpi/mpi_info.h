// What MPI library the build links, for `longctx info`.
#pragma once
#include <string>

namespace longctx {
std::string mpi_library_version();  // "" when MPI is not built
}
