-- luacheck for the Redis scripts (`make lint`): Lua 5.1 as Redis embeds it.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV", "cjson", "struct" }
max_line_length = 100
