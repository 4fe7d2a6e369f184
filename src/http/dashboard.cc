#include "src/http/dashboard.h"

#include <string>

#include "src/http/auth.h"

namespace dsm::http {

const DashboardAsset* FindDashboardAsset(std::string_view path) {
  // Every spelling the router (and the authentication's scope) accepts for a route.
  std::string route = RoutePath(path);
  if (route == "/") route = "/dashboard";
  for (size_t i = 0; i < kDashboardAssetCount; ++i) {
    if (route == kDashboardAssets[i].path) return &kDashboardAssets[i];
  }
  return nullptr;
}

void ServeDashboard(std::string_view path, Reply& reply) {
  const DashboardAsset* asset = FindDashboardAsset(path);
  if (asset == nullptr) {
    return reply.SendError(
        Status::NotFound("no such dashboard file: " + std::string(path.substr(0, 200))));
  }
  // The page is served from this node only, cannot be framed (clickjacking) and its files are
  // taken for what their Content-Type says.
  reply.AddHeader("Content-Security-Policy",
                  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                  "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                  "frame-ancestors 'none'");
  reply.AddHeader("X-Frame-Options", "DENY");
  reply.AddHeader("X-Content-Type-Options", "nosniff");
  reply.AddHeader("Referrer-Policy", "no-referrer");
  reply.SendAs(200, asset->body,
               Pistache::Http::Mime::MediaType::fromString(std::string(asset->media_type) +
                                                           "; charset=utf-8"));
}

}  // namespace dsm::http
