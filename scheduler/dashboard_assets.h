#pragma once

// The dashboard's files (our page and scripts from web/src, uPlot from web/node_modules), put
// into the binary at build time by web/embed.cmake, so the page works offline and needs no
// files beside sweepd.

#include <cstddef>

#include "absl/strings/string_view.h"

namespace sweepd::scheduler {

struct DashboardAsset {
  const char* path;  // "/assets/app.js"; the page itself is "/"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

// The asset served at `path`, or nullptr.
const DashboardAsset* FindDashboardAsset(absl::string_view path);

}  // namespace sweepd::scheduler
