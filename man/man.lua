-- Man pages are read in 80 columns: a table there overflows (man --warnings says so), so each
-- row becomes a tagged paragraph, the way man pages list options: the first cell is the tag,
-- each further cell a paragraph, prefixed by its column's heading from the second on.
local utils = pandoc.utils

local function heading(tbl, i)
  local rows = tbl.head and tbl.head.rows or {}
  if #rows == 0 or not rows[1].cells[i] then return nil end
  return utils.stringify(rows[1].cells[i].contents)
end

function Table(tbl)
  local items = {}
  for _, body in ipairs(tbl.bodies) do
    for _, row in ipairs(body.body) do
      local term = utils.blocks_to_inlines(row.cells[1].contents)
      local def = {}
      for i = 2, #row.cells do
        local blocks = row.cells[i].contents
        if #blocks > 0 then
          local inl = utils.blocks_to_inlines(blocks)
          local h = heading(tbl, i)
          if i > 2 and h and h ~= "" then
            table.insert(inl, 1, pandoc.Space())
            table.insert(inl, 1, pandoc.Str(h .. ":"))
          end
          table.insert(def, pandoc.Para(inl))
        end
      end
      table.insert(items, {term, {def}})
    end
  end
  return pandoc.DefinitionList(items)
end

-- docs/NAME.N.md opens with "# name(N) — what it is": that becomes the NAME section (what
-- whatis and apropos read), and the document's "##" sections become the page's sections.
function Pandoc(doc)
  local blocks = doc.blocks
  local first = blocks[1]
  if first and first.t == "Header" and first.level == 1 then
    local text = utils.stringify(first.content)
    local name, desc = text:match("^(%S+)%(%w+%)%s+—%s+(.+)$")
    if name then
      blocks:remove(1)
      blocks:insert(1, pandoc.Header(1, "NAME"))
      blocks:insert(2, pandoc.Para({pandoc.Str(name), pandoc.Space(), pandoc.Str("-"),
                                    pandoc.Space(), pandoc.Str(desc)}))
      for i = 3, #blocks do
        if blocks[i].t == "Header" then
          blocks[i].level = math.max(1, blocks[i].level - 1)
          if blocks[i].level == 1 then
            blocks[i].content = {pandoc.Str(utils.stringify(blocks[i].content):upper())}
          end
        end
      end
    end
  end
  return pandoc.Pandoc(blocks, doc.meta)
end
