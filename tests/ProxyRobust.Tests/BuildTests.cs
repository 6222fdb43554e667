namespace ProxyRobust.Tests;

/// <summary>Builds as CI systems and users run them (issue 12): a package root without its slash, an output
/// folder.</summary>
public sealed class BuildTests
{
    private static (int Code, string Output) Dotnet(params string[] args)
    {
        var (code, stdout, stderr) = TestSupport.RunDotnet(TestSupport.RepositoryRoot(), args);
        return (code, stdout + stderr);
    }

    /// <summary>NUGET_PACKAGES=/x/packages (no slash) once gave ".../packagestorchsharp/...": three NativeTests
    /// failed.</summary>
    [Fact]
    public void The_torchsharp_folder_is_found_when_the_package_root_lacks_its_trailing_slash()
    {
        var dir = TestSupport.MetadataValue("TorchSharpNativeDir")!;
        var root = dir[..dir.IndexOf("torchsharp", StringComparison.Ordinal)].TrimEnd('/');
        var (code, output) = Dotnet(
            "msbuild",
            "tests/ProxyRobust.Tests/ProxyRobust.Tests.csproj",
            "-getProperty:TorchSharpNativeDir",
            $"-p:NuGetPackageRoot={root}"
        );
        Assert.True(code == 0, output);
        Assert.True(Directory.Exists(output.Trim()), $"'{output.Trim()}' is not a folder (package root '{root}')");
    }

    /// <summary>`dotnet build -o DIR` once failed: the ELF-patch step looked for ElfPatch.dll in its own
    /// bin/.</summary>
    [Fact]
    public void The_cli_builds_into_an_output_folder()
    {
        using var tmp = new TempDir();
        var (code, output) = Dotnet(
            "build",
            "src/ProxyRobust.Cli",
            "-c",
            "OutputFolderTest",
            "-o",
            tmp.Path,
            "-nologo",
            "-v",
            "q"
        );
        Assert.True(code == 0, output);
        Assert.True(File.Exists(tmp.File("ProxyRobust.Cli.dll")));
        Assert.True(
            File.Exists(tmp.File("libLibTorchSharp.so"))
                || File.Exists(tmp.File("runtimes/linux-x64/native/libLibTorchSharp.so"))
        );
    }
}
