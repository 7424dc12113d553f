#pragma once

// A multiset of doubles with rank queries in O(log n): the k-th smallest and how many are
// smaller. Pruning decisions use it so they never scan the history. Built on libstdc++'s
// policy-based red-black tree (a GCC extension, the toolchain this project targets).
// Not thread-safe.

#include <cstdint>
#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>
#include <functional>
#include <utility>

namespace sweepd::pruning {

class OrderStatistics {
 public:
  // `id` makes equal values distinct entries (one per trial).
  void Insert(double value, int64_t id) { tree_.insert({value, id}); }
  void Erase(double value, int64_t id) { tree_.erase({value, id}); }
  size_t size() const { return tree_.size(); }
  // The k-th smallest value (0-based); k < size().
  double Kth(size_t k) const { return tree_.find_by_order(k)->first; }
  // The k-th smallest (value, id).
  std::pair<double, int64_t> KthEntry(size_t k) const { return *tree_.find_by_order(k); }
  // Linear-interpolated percentile (0..100) as numpy's default.
  double Percentile(double p) const {
    const double index = static_cast<double>(tree_.size() - 1) * p / 100.0;
    const auto lo = static_cast<size_t>(index);
    const double a = Kth(lo);
    if (lo + 1 >= tree_.size()) return a;
    const double frac = index - static_cast<double>(lo);
    return frac == 0 ? a : a + (Kth(lo + 1) - a) * frac;
  }

 private:
  __gnu_pbds::tree<std::pair<double, int64_t>, __gnu_pbds::null_type,
                   std::less<std::pair<double, int64_t>>, __gnu_pbds::rb_tree_tag,
                   __gnu_pbds::tree_order_statistics_node_update>
      tree_;
};

}  // namespace sweepd::pruning
