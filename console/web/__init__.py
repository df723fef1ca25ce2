"""The console in a browser (`edge-console web`, `edge-console --web`): textual-serve behind
a login, over HTTPS with the registry's own certificate.

- `server`: the web face (WebConsole: start, stop, the open tabs' console processes);
- `sessions`: server-side login sessions and the failed-login rate limit;
- `app_process`: the console process behind one browser tab (attached, never serving);
- `state`: web.json in the data dir, where the web face can be opened (the Device screen).

Import the module you need: `state` is light, `server` pulls in aiohttp and textual-serve.
"""
