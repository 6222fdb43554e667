using ProxyRobust.Native;

// Usage: ElfPatch FOLDER...  — patches libLibTorchSharp.so under each folder when the host needs it.
try
{
    foreach (var folder in args)
    {
        foreach (var line in ElfVersionPatcher.PatchFolderIfHostNeeds(folder))
            Console.WriteLine($"ElfPatch: {line}");
    }
    return 0;
}
catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"ElfPatch: {e.Message}");
    return 1;
}
