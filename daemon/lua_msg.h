/*
 * lua_msg - the postern.msg and postern.rcpt classes that policies see
 *
 * lua_msg_open() registers the classes' metatables and adds the C module
 * "postern.core" (lua_core.c) to the preload table on top of the stack.
 * lua_msg_push() pushes a msg object for one message; lua_msg_invalidate()
 * cuts it (and its rcpt objects) off from the C message once the chain has
 * run, so a policy that kept a reference gets "message no longer valid"
 * instead of a dangling pointer (rspamd's lua_check_task catches the same).
 * lua_msg_apply_result() reads the chain's return value as a verdict for the
 * recipients still undecided.
 *
 * Misuse raises (luaL_argerror); everything Lua-visible has a doc block
 * ("--- msg:add_header(name, value)") that postern-lua(7) is written from.
 */
#ifndef POSTERN_LUA_MSG_H
#define POSTERN_LUA_MSG_H

#include <lua.h>

#include "policy.h"

void lua_msg_open(lua_State *L);
void lua_msg_push(lua_State *L, struct policy_input *in);
void lua_msg_invalidate(lua_State *L, struct policy_input *in);
int lua_msg_apply_result(lua_State *L, int idx, struct policy_input *in, char **error_r);
int lua_msg_verdict_problem(lua_State *L);
int luaopen_postern_core(lua_State *L);
struct policy_input *lua_msg_check(lua_State *L, int idx);
struct mime_tree *lua_msg_mime(lua_State *L, struct policy_input *in);
void lua_scan_methods(lua_State *L);

#endif
