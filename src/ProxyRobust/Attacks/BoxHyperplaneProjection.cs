using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// The step FAB needs (Croce &amp; Hein, ICML 2020, "Minimally distorted adversarial examples with a fast
/// adaptive boundary attack", eq. 7): for each row, the smallest perturbation d (in l-inf or l-2 norm) that moves the
/// point t onto the hyperplane w.(t + d) = b while keeping t + d inside the box [0,1]^D.
/// <para>Both norms reduce to a one-dimensional monotone piecewise-linear equation whose breakpoints are where a
/// coordinate hits the box; sorting the breakpoints and taking cumulative sums solves every row exactly in O(D log D).
/// When the hyperplane cannot be reached inside the box, the result is the box corner that gets closest to it.</para>
/// </summary>
public static class BoxHyperplaneProjection
{
    /// <param name="t">points, [N, D], inside [0,1]</param>
    /// <param name="w">normals, [N, D]</param>
    /// <param name="b">offsets, [N]</param>
    public static Tensor Project(Norm norm, Tensor t, Tensor w, Tensor b) =>
        norm == Norm.Linf ? Linf(t, w, b) : L2(t, w, b);

    /// <summary>
    /// l-inf: with c = w.t - b made non-negative by flipping the sign of (w, b), the best move of radius rho
    /// lowers w.x by G(rho) = sum_i |w_i| min(rho, room_i), room_i = t_i if w_i &gt; 0 else 1 - t_i. G is increasing
    /// and piecewise linear with breakpoints at the rooms; the answer is the smallest rho with G(rho) = c and d_i =
    /// -sign(w_i) min(rho, room_i).
    /// </summary>
    public static Tensor Linf(Tensor t, Tensor w, Tensor b)
    {
        using var scope = NewDisposeScope();
        (w, var c) = Oriented(t, w, b);
        var room = where(w.gt(0), t, 1 - t);
        var rho = SolveIncreasingPiecewiseLinear(room, w.abs(), c);
        var d = -w.sign() * minimum(rho, room);
        return d.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// l-2: the KKT conditions give d_i = clip(-lambda w_i, -t_i, 1 - t_i) for some lambda &gt;= 0 (after the
    /// sign flip that makes c = w.t - b non-negative). H(lambda) = -w.d is increasing and piecewise linear with
    /// breakpoints r_i = room_i / |w_i| where coordinate i hits the box; solve H(lambda) = c.
    /// </summary>
    public static Tensor L2(Tensor t, Tensor w, Tensor b)
    {
        using var scope = NewDisposeScope();
        (w, var c) = Oriented(t, w, b);
        var w2 = w * w;
        var room = where(w.gt(0), t, 1 - t);
        var active = w.abs().gt(1e-12f);
        var r = where(active, room / w.abs().clamp_min(1e-12f), full_like(room, 1e12f));
        var lambda = SolveIncreasingPiecewiseLinear(r, w2, c);
        var d = -w.sign() * minimum(lambda * w.abs(), room);
        return where(active, d, zeros_like(d)).MoveToOuterDisposeScope();
    }

    /// <summary>(w, c) with the signs of w and b flipped where needed so that c = w.t - b &gt;= 0: the point must lower
    /// w.x by c.</summary>
    private static (Tensor W, Tensor C) Oriented(Tensor t, Tensor w, Tensor b)
    {
        var c = (w * t).sum(1) - b;
        using var flip = where(c.lt(0), -1.0f, 1.0f).to(w.dtype).unsqueeze(1);
        return (w * flip, c.abs());
    }

    /// <summary>
    /// Per row, the smallest s &gt;= 0 with F(s) = sum_i slope_i * min(s, breakpoint_i) = c (breakpoints, slopes &gt;=
    /// 0):
    /// F is increasing and piecewise linear, so sort the breakpoints, evaluate F at each (cumulative sums), find the
    /// segment where it crosses c and solve the linear piece. +infinity where even F(max breakpoint) &lt; c.
    /// </summary>
    private static Tensor SolveIncreasingPiecewiseLinear(Tensor breakpoints, Tensor slopes, Tensor c)
    {
        using var scope = NewDisposeScope();
        var (sorted, order) = breakpoints.sort(1);
        var slopeSorted = slopes.gather(1, order);
        var saturated = (slopeSorted * sorted).cumsum(1) - slopeSorted * sorted; // sum_{j<k} slope_j breakpoint_j
        var free = slopeSorted.flip(1).cumsum(1).flip(1); // sum_{j>=k} slope_j
        var atBreakpoint = saturated + sorted * free; // F(breakpoint_(k))
        var k = atBreakpoint.lt(c.unsqueeze(1)).sum(1, keepdim: true); // s lies in [bp_(k-1), bp_(k)]
        long dims = breakpoints.shape[1];
        var kc = k.clamp_max(dims - 1);
        var s = (c.unsqueeze(1) - saturated.gather(1, kc)) / free.gather(1, kc).clamp_min(1e-30f);
        return where(k.lt(dims), s, full_like(s, double.PositiveInfinity)).MoveToOuterDisposeScope();
    }
}
