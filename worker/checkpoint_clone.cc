#include "worker/checkpoint_clone.h"

#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace sweepd::worker {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kClientPrefix = "ckpt-";

// The step of a client checkpoint file name (ckpt-<step>-<name>), or -1.
int64_t ClientStep(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kClientPrefix)) return -1;
  const size_t dash = name.find('-');
  if (dash == absl::string_view::npos) return -1;
  int64_t step = -1;
  if (!absl::SimpleAtoi(name.substr(0, dash), &step) || step < 0) return -1;
  return step;
}

// A temporary file of the client's atomic writes (<name>.tmp.<pid>): never complete.
bool Temporary(absl::string_view name) { return name.find(".tmp.") != absl::string_view::npos; }

// `link`: the client's files, which it only ever replaces by a rename, so a link shares nothing
// that changes. A script's own files may be rewritten in place (torch.save over the old name):
// those are copied, or the copy's first save would change its parent's checkpoint.
absl::Status LinkOrCopy(const fs::path& source, const fs::path& target, bool link) {
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec)
    return absl::InternalError(absl::StrCat(target.parent_path().string(), ": ", ec.message()));
  if (fs::exists(target, ec)) return absl::OkStatus();  // an earlier attempt copied it
  if (link) {
    fs::create_hard_link(source, target, ec);
    if (!ec || ec == std::errc::file_exists) return absl::OkStatus();
  }
  // Another filesystem, or one without links: a copy, renamed into place when whole.
  const fs::path tmp = target.string() + ".tmp.clone";
  fs::copy_file(source, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return absl::InternalError(
        absl::StrCat("copying ", source.string(), " to ", target.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> CloneCheckpoint(const fs::path& from, const fs::path& to, int64_t step) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(to, ec)) {
    if (ClientStep(entry.path().filename().string()) == step) return 0;  // copied before
  }
  if (!fs::is_directory(from, ec)) {
    return absl::NotFoundError(absl::StrCat("no checkpoint folder ", from.string(),
                                            " on this node (give the spec a shared "
                                            "checkpoint: {dir: ...})"));
  }
  std::vector<fs::path> of_step;
  std::vector<fs::path> everything;
  std::set<int64_t> steps;
  for (auto it = fs::recursive_directory_iterator(from, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!it->is_regular_file(ec) || Temporary(name)) continue;
    const int64_t file_step = it.depth() == 0 ? ClientStep(name) : -1;
    if (file_step >= 0) steps.insert(file_step);
    if (file_step == step) of_step.push_back(it->path());
    everything.push_back(it->path());
  }
  if (ec) return absl::InternalError(absl::StrCat("reading ", from.string(), ": ", ec.message()));
  if (of_step.empty() && !steps.empty()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint file of step ", step, " (ckpt-", step,
                                            "-*) in ", from.string(), "; it has steps ",
                                            absl::StrJoin(steps, ", ")));
  }
  const std::vector<fs::path>& files = of_step.empty() ? everything : of_step;
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint files in ", from.string()));
  }
  int copied = 0;
  for (const fs::path& file : files) {
    const fs::path target = to / fs::relative(file, from, ec);
    if (ec) return absl::InternalError(absl::StrCat(file.string(), ": ", ec.message()));
    if (auto status = LinkOrCopy(file, target, /*link=*/!of_step.empty()); !status.ok()) {
      return status;
    }
    ++copied;
  }
  return copied;
}

}  // namespace sweepd::worker
