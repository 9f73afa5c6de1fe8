#include "comm/mpi/mpi_info.h"

#include <mpi.h>

namespace longctx {

std::string mpi_library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(buf, &len);  // callable before MPI_Init
  std::string s(buf, size_t(len));
  if (auto nl = s.find_first_of("\r\n,"); nl != std::string::npos) s.resize(nl);
  return s;
}

}  // namespace longctx
