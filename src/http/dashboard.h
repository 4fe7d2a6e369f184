// The dashboard: a plain HTML/JS/CSS page (src/http/dashboard/) served by every node at GET /
// and /dashboard. It shows the cluster as the node sees it (from /status, refreshed), a live
// feed of messages (the node's event stream, /messages/stream) and a form to send a message with
// its outcome. The files are compiled into the binary (dashboard/embed.cmake generates
// dashboard_assets.cc), so the page needs no build step, no network and no files at run time.
//
// Immutable data and pure functions: thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

#include "src/http/reply.h"

namespace dsm::http {

struct DashboardAsset {
  const char* path;        // URL path, e.g. "/dashboard/app.js"
  const char* media_type;  // e.g. "text/javascript"; the files are UTF-8
  const char* body;
};

// Defined in the generated dashboard_assets.cc.
extern const DashboardAsset kDashboardAssets[];
extern const size_t kDashboardAssetCount;

// The asset served at `path` ("/" is the page itself); nullptr when there is none.
const DashboardAsset* FindDashboardAsset(std::string_view path);

// Answers GET `path` with its asset (200), or a JSON 404.
void ServeDashboard(std::string_view path, Reply& reply);

}  // namespace dsm::http
