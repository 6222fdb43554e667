using System.Diagnostics;
using ProxyRobust.Native;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class NativeTests
{
    private static string OriginalLibrary()
    {
        var dir = TestSupport.MetadataValue("TorchSharpNativeDir");
        var path = Path.Combine(dir ?? "", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"untouched libLibTorchSharp.so not found at {path}");
        return path;
    }

    [Fact]
    public void Patch_changes_exactly_the_flags_of_the_GLIBCXX_3_4_32_entry_and_is_idempotent()
    {
        using var tmp = new TempDir();
        var copy = tmp.File("libLibTorchSharp.so");
        File.Copy(OriginalLibrary(), copy);
        var before = File.ReadAllBytes(copy);
        var flagsOffset = ElfVersionPatcher.FindVernauxFlagsOffset(
            before,
            ElfVersionPatcher.LibTorchSharpRequiredVersion
        );
        Assert.True(flagsOffset > 0);
        Assert.Equal(0, before[flagsOffset] & 2);

        Assert.Equal(
            ElfVersionPatcher.Outcome.Patched,
            ElfVersionPatcher.MakeVersionWeak(copy, ElfVersionPatcher.LibTorchSharpRequiredVersion)
        );
        var after = File.ReadAllBytes(copy);
        Assert.Equal(before.Length, after.Length);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
        Assert.Equal([flagsOffset], changed);
        Assert.Equal(before[flagsOffset] | 2, after[flagsOffset]);

        Assert.Equal(
            ElfVersionPatcher.Outcome.AlreadyWeak,
            ElfVersionPatcher.MakeVersionWeak(copy, ElfVersionPatcher.LibTorchSharpRequiredVersion)
        );
        Assert.Equal(after, File.ReadAllBytes(copy));
    }

    [Fact]
    public void Readelf_independently_sees_the_patched_entry_as_weak()
    {
        if (!File.Exists("/usr/bin/readelf"))
            return; // binutils absent: the byte-level test above still holds
        using var tmp = new TempDir();
        var copy = tmp.File("lib.so");
        File.Copy(OriginalLibrary(), copy);
        ElfVersionPatcher.MakeVersionWeak(copy, ElfVersionPatcher.LibTorchSharpRequiredVersion);
        var psi = new ProcessStartInfo("/usr/bin/readelf", ["-V", "-W", copy]) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var lines = p.StandardOutput.ReadToEnd().Split('\n');
        p.WaitForExit();
        var entry = Assert.Single(lines, l => l.Contains("Name: GLIBCXX_3.4.32"));
        Assert.Contains("Flags: WEAK", entry);
        Assert.DoesNotContain(lines, l => l.Contains("Name: GLIBCXX_3.4.30") && l.Contains("WEAK"));
    }

    [Fact]
    public void Unknown_version_is_left_alone_and_a_truncated_file_is_rejected()
    {
        var bytes = File.ReadAllBytes(OriginalLibrary());
        var copy = (byte[])bytes.Clone();
        Assert.Equal(
            ElfVersionPatcher.Outcome.VersionNotRequired,
            ElfVersionPatcher.MakeVersionWeak(copy, "GLIBCXX_9.9.99")
        );
        Assert.Equal(bytes, copy);
        Assert.Throws<InvalidDataException>(() =>
            ElfVersionPatcher.FindVernauxFlagsOffset(bytes[..4096], "GLIBCXX_3.4.32")
        );
        Assert.Throws<InvalidDataException>(() =>
            ElfVersionPatcher.FindVernauxFlagsOffset("not an elf file at all, really"u8.ToArray(), "x")
        );
    }

    [Fact]
    public void Torch_initialises_and_computes()
    {
        TestSupport.InitTorch();
        using var a = tensor(new float[] { 1, 2, 3, 4 }, [2, 2]);
        using var b = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, b.data<float>().ToArray());
        // glibc accepted the allocator settings that keep freed tensor memory (NativeHeap)
        if (OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable(NativeHeap.OptOutVariable) is null)
            Assert.True(NativeHeap.Applied);
    }
}

public sealed class NativeLoadMessageTests
{
    [Fact]
    public void A_load_failure_is_explained_in_one_sentence()
    {
        var glibcxx = new TypeInitializationException(
            "TorchSharp.torch",
            new DllNotFoundException(
                "libLibTorchSharp.so: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found"
            )
        );
        var text = ProxyRobust.Native.TorchRuntime.Explain(glibcxx, "/opt/app/");
        Assert.StartsWith("Cannot start libtorch: ", text);
        Assert.Contains("GLIBCXX_3.4.32", text);
        Assert.Contains("/opt/app/", text);
        Assert.Single(text.Split('\n'));
        Assert.EndsWith(".", text);
        var missing = ProxyRobust.Native.TorchRuntime.Explain(
            new DllNotFoundException("libtorch.so: cannot open shared object file\nmore"),
            "/x/"
        );
        Assert.Contains("dotnet restore", missing);
        Assert.Single(missing.Split('\n'));
    }
}
