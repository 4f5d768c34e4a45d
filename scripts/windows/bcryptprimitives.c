/* A stand-in for Windows' bcryptprimitives.dll, for running ccsync under Wine 8, which lacks it.
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll; without the DLL every
 * .exe stops at load time (exit code 53). This one fills the buffer from RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. Built by scripts/build-windows.sh with the mingw
 * compiler into a cache outside the repository; never shipped, never used on real Windows.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
