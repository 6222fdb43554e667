using ProxyRobust.Native;
using static TorchSharp.torch;
TorchRuntime.EnsureInitialised();
var x = randn(3, 3);
Console.WriteLine(x.matmul(x).sum().item<float>());
