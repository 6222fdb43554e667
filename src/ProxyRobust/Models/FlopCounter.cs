using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Counts the multiply-accumulates of one forward pass (convolutions and linear layers, which dominate) by
/// running it once with hooks. A training step costs about 3x the forward (forward + backward for activations and
/// weights); an attack step about 2x (no weight gradients). FLOPs = 2 x MACs.
/// </summary>
public static class FlopCounter
{
    public static long ForwardMacsPerImage(Classifier model)
    {
        long macs = 0;
        var removers = new List<Action>();
        foreach (var (_, m) in model.named_modules())
        {
            if (m is Conv2d conv)
            {
                var hc = conv.register_forward_hook(
                    (mod, input, output) =>
                    {
                        var w = conv.weight!;
                        macs += output.numel() / output.shape[0] * (w.shape[1] * w.shape[2] * w.shape[3]);
                        return output;
                    }
                );
                removers.Add(hc.remove);
            }
            else if (m is Linear lin)
            {
                var hl = lin.register_forward_hook(
                    (mod, input, output) =>
                    {
                        macs += output.numel() / output.shape[0] * lin.weight!.shape[1];
                        return output;
                    }
                );
                removers.Add(hl.remove);
            }
        }
        bool training = model.training;
        model.eval();
        using (no_grad())
        using (var x = zeros(1, model.Spec.InChannels, model.Spec.Height, model.Spec.Width))
            model.forward(x).Dispose();
        model.train(training);
        foreach (var remove in removers)
            remove();
        return macs;
    }
}
